"""`featurepipe runs` and `runs compare`: read back from a real MLflow store."""

from __future__ import annotations

import pytest

from featurepipe.errors import FlowError
from featurepipe.flow import run_flow
from featurepipe.flow.runs import compare_runs, find_run, list_runs

from ..conftest import run_cli
from .conftest import Tiny


def test_runs_lists_and_compare_shows_what_differs(tiny: Tiny) -> None:
    assert list_runs(tiny.config) == []
    first = run_flow(tiny.config)
    second = run_flow(tiny.config, parameters={"shift": 2})

    listed = list_runs(tiny.config)
    assert [r.flow_run for r in listed] == [second.run_id, first.run_id]  # newest first
    assert {r.status for r in listed} == {"FINISHED"}
    assert listed[0].metrics["total"] == 5.0 and listed[1].metrics["total"] == 3.0
    assert find_run(tiny.config, first.run_id[:-2]).flow_run == first.run_id  # a unique prefix

    comparison = compare_runs(tiny.config, first.run_id, second.run_id)
    by_key = {d.key: (d.kind, d.a, d.b) for d in comparison.differences}
    assert by_key["param.b_stats.shift"] == ("parameter", "0", "2")  # effective values
    assert by_key["total"] == ("metric", "3", "5")
    assert by_key["status.a_load"] == ("step", "finished", "up to date")
    assert "data.read.table:numbers" not in by_key  # both read version 0
    assert "fingerprint.b_stats" in by_key and "fingerprint.a_load" not in by_key

    result = run_cli("runs", cwd=tiny.root)
    assert result.returncode == 0, result.stderr
    assert first.run_id in result.stdout and second.run_id in result.stdout
    assert "1/2" in result.stdout and "2/2" in result.stdout  # steps run of the steps
    result = run_cli("runs", "-m", "total", cwd=tiny.root)
    assert result.returncode == 0, result.stderr
    totals = [line.split()[-2] for line in result.stdout.splitlines() if "FINISHED" in line]
    assert sorted(totals) == ["3", "5"], result.stdout  # counts as counts, not 3.0000
    result = run_cli("runs", "compare", first.run_id, second.run_id[:-3], cwd=tiny.root)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "param.b_stats.shift" in out and "total" in out


def test_compare_shows_the_data_versions_that_differ(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_flow(tiny.config)
    tiny.source.write_text("t,x\n2019-01-01T00:00:00Z,1\n2019-01-02T00:00:00Z,5\n")
    second = run_flow(tiny.config)  # a_load reads the new file and rewrites numbers
    comparison = compare_runs(tiny.config, first.run_id, second.run_id)
    data = {d.key: (d.a, d.b) for d in comparison.of_kind("data")}
    assert set(data) == {
        "data.read.source:numbers",
        "data.read.table:numbers",
        "data.written.table:numbers",
    }
    assert data["data.read.table:numbers"] == data["data.written.table:numbers"] == ("0", "1")
    before, after = data["data.read.source:numbers"]
    assert before != after and after is not None and after.startswith("sha256:")
    assert not comparison.of_kind("parameter")  # same parameters: only the data moved
    assert {d.key for d in comparison.of_kind("metric")} == {"total"}

    monkeypatch.setenv("COLUMNS", "200")  # one table row a line
    result = run_cli("runs", "compare", first.run_id, second.run_id, cwd=tiny.root)
    assert result.returncode == 0, result.stderr
    rows = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert "data data.written.table:numbers 0 1" in rows, result.stdout
    assert f"data data.read.source:numbers {before} {after}" in rows


def test_an_unknown_or_ambiguous_run_is_a_clear_error(tiny: Tiny) -> None:
    run_flow(tiny.config)
    run_flow(tiny.config)
    with pytest.raises(FlowError, match="no flow run 'nope'.*featurepipe runs"):
        find_run(tiny.config, "nope")
    with pytest.raises(FlowError, match="matches 2 flow runs"):
        find_run(tiny.config, "20")
    result = run_cli("runs", "compare", "nope", "20", cwd=tiny.root)
    assert result.returncode == 2
    assert "no flow run 'nope'" in result.stderr
