"""The featurepipe command as a user types it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from featurepipe import __version__
from featurepipe.config import load_config
from featurepipe.flow import PendingRecord, write_pending
from featurepipe.tracking import FLOW_TAG, KIND_TAG

from .conftest import run_cli


def test_version_help_and_module_entry_point(tmp_path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and __version__ in result.stdout
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "run" in result.stdout and "ui" in result.stdout


def test_missing_project_is_exit_code_2_with_the_path(tmp_path) -> None:
    result = run_cli("run", "--project", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "no featurepipe.toml" in " ".join(result.stderr.split())


def test_unknown_parameter_and_step_are_refused_before_anything_runs(project) -> None:
    result = run_cli("run", "-p", "max_itr=5", cwd=project)
    assert result.returncode == 2
    assert "unknown parameter(s) ['max_itr']" in " ".join(result.stderr.split())
    assert "max_iter" in result.stderr
    result = run_cli("run", "--step", "05_deploy", cwd=project)
    assert result.returncode == 2
    assert "unknown step(s) ['05_deploy']" in " ".join(result.stderr.split())
    assert not (project / "runs").exists()
    result = run_cli("run", "-p", "novalue", cwd=project)
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_commands(session: int) -> list[str]:
    """The command lines of the live processes in a session (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_ui_logs_pending_records_and_serves_the_mlflow_ui_on_loopback(project) -> None:
    config = load_config(project)
    # a flow run that reused every step left its record for the next command to log
    run_id = "20261124-000000-abcd"
    tags = {KIND_TAG: "flow", FLOW_TAG: run_id}
    (project / "runs" / run_id).mkdir(parents=True)
    pending = write_pending(
        project / "runs" / run_id,
        PendingRecord(run_id, start_ms=1_795_000_000_000, end_ms=1_795_000_001_000,
                      failed=False, tags=tags, params={"x": 1}),
    )  # fmt: skip
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen(
        [sys.executable, "-m", "featurepipe", "ui", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,  # read only if it dies, to show why
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = b""
        while time.monotonic() < deadline and ui.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:  # noqa: S310
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.5)
        assert body.strip() == b"OK", ui.stdout.read().decode() if ui.poll() is not None else ""
        assert (project / "mlflow.db").is_file()
        assert not pending.exists()
        client = MlflowClient(tracking_uri=config.tracking_uri)  # no global MLflow state
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        [run] = client.search_runs([experiment.experiment_id], f"tags.`{FLOW_TAG}` = '{run_id}'")
        assert run.info.start_time == 1_795_000_000_000 and run.data.params == {"x": "1"}
        # MLflow starts its job runner before its server answers: by now it would be running
        commands = _session_commands(ui.pid)
        assert not [c for c in commands if "mlflow.server.jobs" in c], commands
        [server] = [c for c in commands if "uvicorn" in c]
        assert "--workers 1" in server, server
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
        ui.stdout.close()


def test_schema_command_prints_types_nulls_and_misfits(project: Path) -> None:
    raw = "when,amount,Flag\n2013-01-01,10,yes\n2013-01-02,x12,no\n2013-01-03,NA,yes\n"
    (project / "orders.csv").write_text(raw)
    config = (project / "featurepipe.toml").read_text()
    (project / "featurepipe.toml").write_text(
        config.replace(
            "[sources.weather]",
            '[sources.orders]\npath = "orders.csv"\ncolumns = { amount = "int" }\n\n'
            "[sources.weather]",
        )
    )
    result = run_cli("schema", "orders", "--project", str(project), cwd=project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "orders: 3 rows" in out
    assert "date %Y-%m-%d" in out and "int64" in out and "bool" in out
    assert "'x12' ×1" in out  # the value that failed the hint, counted
    assert "33.3%" in out  # amount: one NA of three
    assert "Flag → flag" in out


def test_schema_command_names_an_unknown_source(project: Path) -> None:
    result = run_cli("schema", "nope", "--project", str(project), cwd=project)
    assert result.returncode == 2
    assert "no source 'nope'" in result.stderr and "weather" in result.stderr


def test_connectors_lists_each_kind_with_stage_and_options(tmp_path, monkeypatch) -> None:
    result = run_cli("connectors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'kind = "file" · beta ·' in result.stdout
    assert 'kind = "sql" · beta ·' in result.stdout
    assert 'kind = "http" · alpha ·' in result.stdout
    assert 'kind = "push" · beta ·' in result.stdout
    for option in ("incremental", "storage_options", "primary_key", "password_env", "pagination"):
        assert option in result.stdout
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    http = run_cli("connectors", "http", cwd=tmp_path)
    assert http.returncode == 0, http.stderr
    for text in ("pagination.style", "auth.token_env", "HttpAuth | None", "ColumnHint | str"):
        assert text in http.stdout
    assert 'kind = "sql"' not in http.stdout
    unknown = run_cli("connectors", "ftp", cwd=tmp_path)
    assert unknown.returncode == 2 and "no connector 'ftp'" in unknown.stderr


def test_the_summary_prints_scalars_and_a_ui_command_that_runs_here(
    tmp_path, monkeypatch, capsys
) -> None:
    from featurepipe.cli import _print_summary
    from featurepipe.flow import FlowResult, StepResult

    lineage = [{"source": "flights", "locations": ["/somewhere/flights.csv.zip"]}]
    summary = {"lineage": lineage, "quarantined_values": 0}
    ingest = StepResult("01_ingest", tmp_path / "01_ingest.ipynb", "", summary=summary)
    flow = FlowResult("r1", tmp_path, "sqlite:///mlflow.db", "1", "abc123", steps=[ingest])
    bin_dir = Path(sys.executable).parent
    monkeypatch.chdir(bin_dir.parent.parent)  # the project holding .venv, as after `make run`
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the environment is not activated
    _print_summary(flow, Path("."))
    out = capsys.readouterr().out.replace("\n", "")
    assert f"{bin_dir.relative_to(Path.cwd()) / 'featurepipe'} ui then" in out
    assert "#/experiments/1/runs/abc123?workflowType=machine_learning" in out
    assert "01_ingest: quarantined_values=0" in out and "somewhere" not in out  # no raw lists
    monkeypatch.setenv("PATH", str(bin_dir))  # activated: the plain name works
    _print_summary(flow, tmp_path)
    out = capsys.readouterr().out.replace("\n", "")
    assert f"UI: featurepipe ui --project {tmp_path} then" in out
