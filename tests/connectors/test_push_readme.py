"""The README's push section, run as written: its options block validates, and its walkthrough
(declare a source, serve, send a signed event, `featurepipe run --step 01_ingest`, read the
warehouse) runs in a fresh git copy of the project on a free port; its undo block then leaves
the copy exactly as it was."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.config import PushSourceConfig, load_config

from ..conftest import REPO, copy_project
from .push_support import free_port

README = REPO / "README.md"


def readme_block(mark: str, lang: str) -> str:
    """The fenced ``lang`` block right after ``<!-- mark -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    at = text.index(f"<!-- {mark} -->\n")
    fence = f"<!-- {mark} -->\n```{lang}\n"
    assert text.startswith(fence, at), f"README: no ```{lang} block right after <!-- {mark} -->"
    start = at + len(fence)
    return text[start : text.index("\n```\n", start) + 1]


def test_the_documented_push_options_validate(tmp_path: Path) -> None:
    block = readme_block("push-options", "toml")
    base = (REPO / "featurepipe.toml").read_text(encoding="utf-8")
    (tmp_path / "featurepipe.toml").write_text(base + "\n" + block, encoding="utf-8")
    source = load_config(tmp_path).sources["orders"]
    assert isinstance(source, PushSourceConfig)
    # keys shown in comments (optional ones) are options too, not stale names
    commented = re.findall(r"(?:^#|,)\s*([a-z_]+) = ", block, flags=re.MULTILINE)
    assert commented, "the options block lists no optional keys"
    unknown = sorted(set(commented) - set(PushSourceConfig.model_fields))
    assert not unknown, f"README push options name keys PushSourceConfig lacks: {unknown}"


def _git(project: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}
    return subprocess.run(
        ["git", *args], cwd=project, env=env, capture_output=True, text=True, check=True
    ).stdout


def _run(script: str, project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a README block with bash -e in ``project``; a hung block's processes are killed."""
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: `serve &` included
    )
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"README block did not finish in 300 s:\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.e2e
def test_the_readme_push_walkthrough_runs_as_written(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "repo")
    for name in ("Makefile", ".gitignore"):
        shutil.copy2(REPO / name, project / name)
    (project / ".venv").symlink_to(Path(sys.prefix))  # the README calls .venv/bin/...
    _git(project, "init", "-q")
    (project / ".git" / "info" / "exclude").write_text(".venv\n")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "fresh clone")
    before = _git(project, "status", "--porcelain", "--ignored")

    try_it = readme_block("push-walkthrough: try", "sh")
    assert try_it.count("8787") == 3  # serve --port, the health poll and the sender's URL
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ORDERS_SECRET")}
    result = _run(try_it.replace("8787", str(free_port())), project, env)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    accepted = re.search(r"\{'accepted': '(msg_[0-9a-f]+)', 'duplicate': False\}", result.stdout)
    assert accepted, result.stdout[-3000:]
    assert list((project / "push" / "orders").glob("*.ndjson"))  # flushed by the SIGTERM
    table, _version = fp.DeltaDestination(project / "warehouse").read("orders")
    orders = table.collect()
    assert orders["webhook_id"].to_list() == [accepted[1]]
    row = orders.row(0, named=True)
    assert (row["order"], row["amount"], row["customer"]) == (1, 9.5, {"id": 7})
    assert orders.schema["received_at"] == pl.Datetime("us", "UTC")
    assert "shape: (1," in result.stdout  # what the last command shows the reader

    undo = _run(readme_block("push-walkthrough: undo", "sh"), project, env)
    assert undo.returncode == 0, undo.stderr
    assert _git(project, "status", "--porcelain", "--ignored") == before
