"""02_features and 03_train on a tiny synthetic project: real kernels, Delta, GX and MLflow.

The flights e2e run (tests/test_flow.py) covers the real data; these cover what it
cannot afford to vary: a failing feature suite and a parameter grid, in seconds.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import numpy as np
import papermill
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

import featurepipe as fp
from featurepipe.destinations import DeltaDestination

from .conftest import REPO, run_cli

pytestmark = pytest.mark.e2e

START = datetime(2020, 1, 1, tzinfo=UTC)
PLOTS = {"roc", "precision_recall", "calibration", "confusion_matrix", "permutation_importance"}

TOML = """
name = "tiny_events"
[tracking]
experiment = "tiny_events"
[sources.events]
path = "data/events.csv"
[features]
name = "event_features"
base = "events"
event_time = "at"
keys = ["id"]
calendar = ["hour"]
columns = ["site", "x"]
target = { name = "late", column = "delay", greater_than = 15 }
[features.derived.events]
known = "at + INTERVAL '1 minute' * delay"
[[features.windows]]
name = "site_delay_3h"
table = "events"
by = ["site"]
value = "delay"
period = "3h"
known_at = "known"
[model]
name = "tiny-late"
split = "time"
test_start = 2020-01-18T00:00:00+00:00
metric = "log_loss"        # lower wins: the grid must pick by it, not by a default
gates = { roc_auc = 0.5 }
[model.params]
max_iter = 20
[predict]
start = 2020-01-20T00:00:00+00:00
[flow]
notebooks = ["02_features", "03_train", "04_predict"]
"""


def _events(rows: int = 600) -> pl.DataFrame:
    """Hourly events at two sites; lateness grows with ``x`` and at site B."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=rows)
    site = rng.choice(["A", "B"], size=rows)
    delay = (20 * x + 15 * (site == "B") + rng.normal(scale=10, size=rows)).round()
    return pl.DataFrame(
        {
            "id": np.arange(rows),
            "at": [START + timedelta(hours=i) for i in range(rows)],
            "site": site,
            "x": x,
            "delay": delay.astype(int),
        }
    )


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose warehouse already holds the loaded ``events`` table."""
    root = tmp_path_factory.mktemp("tiny_model") / "project"
    (root / "data").mkdir(parents=True)
    (root / "expectations").mkdir()
    (root / "featurepipe.toml").write_text(TOML)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    events = _events()
    events.write_csv(root / "data" / "events.csv")
    DeltaDestination(root / "warehouse").write("events", events, load_id="setup")
    return root


def _suite(project: Path, expectations: list[dict]) -> None:
    suite = {"name": "event_features", "expectations": expectations}
    (project / "expectations" / "event_features.json").write_text(json.dumps(suite))


def test_a_failing_feature_suite_stops_the_flow_and_writes_nothing_downstream(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(tiny_project, project)
    _suite(
        project,
        [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "site"}},
            {  # the window is empty for the first events at each site: the suite fails
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "site_delay_3h"},
            },
        ],
    )

    result = run_cli("run", "--project", str(project), cwd=project, timeout=300)

    assert result.returncode == 3, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "step 02_features failed" in err
    assert "event_features.site_delay_3h: expect_column_values_to_not_be_null" in err
    assert DeltaDestination(project / "warehouse").tables() == ["events"]
    assert not (project / "models").exists() or not any((project / "models").iterdir())
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_events")
    runs = client.search_runs([experiment.experiment_id])
    steps = {r.info.run_name: r.info.status for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert steps == {"02_features": "FAILED"}  # 03_train and 04_predict never started
    assert client.search_registered_models() == []


def test_train_notebook_logs_five_plots_and_picks_the_grids_best_by_the_metric(
    tiny_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(tiny_project, project)
    config = fp.load_config(project)
    warehouse = DeltaDestination(project / "warehouse")
    features = fp.build_features({"events": warehouse.read("events")[0]}, config.features)
    warehouse.write("event_features", features.frame, load_id="setup")  # as 02_features
    executed = tmp_path / "03_train.out.ipynb"

    papermill.execute_notebook(
        str(project / "notebooks" / "03_train.ipynb"),
        str(executed),
        parameters={"project_dir": str(project), "grid": {"max_iter": [1, 5, 40]}},
        cwd=str(project),
        kernel_name="python3",
        progress_bar=False,
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_events")
    runs = client.search_runs([experiment.experiment_id])
    [train] = [r for r in runs if r.info.run_name == "03_train"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train.info.run_id]
    assert len(trials) == 3 and all(r.data.tags["featurepipe.trial"] == "true" for r in trials)
    losses = {r.data.params["max_iter"]: r.data.metrics["validation_log_loss"] for r in trials}
    assert set(losses) == {"1", "5", "40"}
    best = min(losses, key=losses.__getitem__)
    assert train.data.params["max_iter"] == best
    assert train.data.params["metric"] == "log_loss"

    plots = {a.path for a in client.list_artifacts(train.info.run_id, "plots")}
    assert plots == {f"plots/{name}.png" for name in PLOTS}
    folder = Path(client.download_artifacts(train.info.run_id, "plots", str(tmp_path)))
    for name in PLOTS:
        assert (folder / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
    notebook = nbformat.read(executed, as_version=4)
    [cell] = [c for c in notebook.cells if "fp.plot_model(" in c.source]
    images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(PLOTS)
