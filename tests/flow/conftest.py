"""A tiny two-notebook project for flow tests: real kernels and a real MLflow store, fast.

``a_load`` reads a small CSV source and writes the Delta table ``numbers``; ``b_stats``
reads that table (reporting its version to MLflow, as the flights notebooks do) and logs
the metric ``total``. ``a_load`` can be told to fail in each way a step can fail.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from featurepipe.config import Config, load_config

FLOW_PARAMS = """project_dir = "."
run_dir = ""
mlflow_run_id = ""
load_id = ""
"""

A_LOAD = (
    FLOW_PARAMS
    + """scale = 1        # multiplies x
fail = ""        # "", "error", "gate", "sleep" or "die": how this step fails
""",
    """
import json, os, signal, time
from pathlib import Path
import featurepipe as fp
from featurepipe.errors import ExpectationFailure

if fail == "error":
    raise ValueError("boom: x has no meaning")
if fail == "gate":
    failure = ExpectationFailure("numbers", "expect_column_values_to_be_between", "x")
    raise fp.ValidationFailed([failure])
if fail == "sleep":
    time.sleep(120)
if fail == "die":
    os.kill(os.getpid(), signal.SIGKILL)
import polars as pl
config = fp.load_config(project_dir)
frame = pl.read_csv(config.sources["numbers"].path).with_columns(pl.col("x") * scale)
fp.DeltaDestination(config.path("warehouse")).write("numbers", frame, load_id=load_id or "manual")
summary = {"rows": frame.height, "scale": scale}
if run_dir:
    Path(run_dir, "a_load.summary.json").write_text(json.dumps(summary))
""",
)

B_STATS = (
    FLOW_PARAMS
    + """shift = 0        # added to the total
""",
    """
import featurepipe as fp

config = fp.load_config(project_dir)
step = fp.open_step(config, "b_stats", mlflow_run_id)
warehouse = fp.DeltaDestination(config.path("warehouse"))
frame, version = warehouse.read("numbers")
location = str(warehouse.table_path("numbers"))
fp.tracking.log_table_versions({"numbers": (location, version)}, context="stats")
total = float(frame.collect()["x"].sum()) + shift
fp.finish_step(step, "b_stats", run_dir, {"total": total, "shift": shift}, metrics={"total": total})
""",
)

TOML = """
name = "tiny"
[tracking]
experiment = "tiny"
[sources.numbers]
path = "data/numbers.csv"
[features]
base = "numbers"
event_time = "t"
target = {{ name = "big", column = "x", greater_than = 1 }}
[model]
test_start = 2020-01-01T00:00:00+00:00
[predict]
start = 2020-01-01T00:00:00+00:00
[flow]
notebooks = ["a_load", "b_stats"]
{flow}
"""


def write_notebook(path: Path, parameters: str, body: str) -> None:
    """A notebook with a tagged parameters cell and one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(textwrap.dedent(body).strip())]
    nbformat.write(nb, str(path))


class Tiny:
    """A tiny project folder and helpers to edit it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "notebooks").mkdir(parents=True)
        (root / "data").mkdir()
        self.source.write_text("t,x\n2019-01-01T00:00:00Z,1\n2019-01-02T00:00:00Z,2\n")
        write_notebook(root / "notebooks" / "a_load.ipynb", *A_LOAD)
        write_notebook(root / "notebooks" / "b_stats.ipynb", *B_STATS)
        self.set_flow("")

    @property
    def source(self) -> Path:
        return self.root / "data" / "numbers.csv"

    def set_flow(self, flow: str) -> None:
        """Rewrite featurepipe.toml with these extra lines in its ``[flow]`` section."""
        (self.root / "featurepipe.toml").write_text(TOML.format(flow=flow))

    @property
    def config(self) -> Config:
        return load_config(self.root)

    def summary(self, run_dir: Path, step: str) -> dict[str, Any]:
        return json.loads((run_dir / f"{step}.summary.json").read_text())


@pytest.fixture
def tiny(tmp_path: Path) -> Tiny:
    """A fresh tiny project."""
    return Tiny(tmp_path / "tiny")
