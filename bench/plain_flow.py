"""The work of the four notebooks as one plain Python script: no papermill, no kernels.

Each ``step_*`` function is the code cells of one notebook in ``notebooks/``, with
the same parameters and the same calls to the featurepipe API, MLflow logging and
model registration included; the notebook's display-only cells (``head()``,
tables shown as the cell's result) are left out. ``run_plain`` runs them in order
in this process the way ``featurepipe.run_flow`` runs the notebooks: one MLflow
parent run, one child run per step, step summaries in ``runs/<run_id>/``.

Run alone (it writes into the project, as ``featurepipe run`` does)::

    .venv/bin/python bench/plain_flow.py [PROJECT_DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STEPS = ("01_ingest", "02_features", "03_train", "04_predict")


def step_ingest(
    project_dir: str = ".",
    run_dir: str = "",
    mlflow_run_id: str = "",
    load_id: str = "",
    months: Sequence[int] = (),
) -> dict[str, Any]:
    """notebooks/01_ingest.ipynb: extract, type, clean, validate (the gate) and load."""
    import polars as pl

    import featurepipe as fp

    config = fp.load_config(project_dir)
    step = fp.open_step(config, "01_ingest", mlflow_run_id)
    load_id = load_id or fp.new_run_id()
    fp.tracking.log_params({"load_id": load_id, "months": list(months) or "all"})

    # Extract
    extracts = {name: fp.extract_file(name, source) for name, source in config.sources.items()}
    raw = {name: extract.frame for name, extract in extracts.items()}
    if months:
        raw["flights"] = raw["flights"].filter(pl.col("month").is_in([str(m) for m in months]))

    # Type
    typed = {
        name: fp.apply_schema(
            name, frame, config.sources[name].columns, config.sources[name].null_values
        )
        for name, frame in raw.items()
    }
    quarantine = pl.concat([t.quarantine for t in typed.values()])

    # Clean
    cleaned = {
        name: fp.clean_table(name, t.frame, config.sources[name].primary_key)
        for name, t in typed.items()
    }

    # Validate: the gate
    reports = fp.validate_tables(
        {n: c.frame for n, c in cleaned.items()}, config.path(config.expectations_dir)
    )
    fp.tracking.log_metrics({f"expectations_failed.{r.table}": len(r.failures) for r in reports})
    fp.require_valid(reports)

    # Load
    warehouse = fp.open_warehouse(config)
    loads = {
        name: warehouse.write(name, c.frame, load_id=load_id, **config.load_options(name))
        for name, c in cleaned.items()
    }
    if quarantine.height:
        warehouse.write("_quarantine", quarantine, load_id=load_id, mode="append")

    tables = pl.DataFrame(
        [
            {
                "table": name,
                "rows_in": typed[name].rows_in,
                "quarantined": typed[name].rows_quarantined,
                "duplicates": cleaned[name].duplicates_removed,
                "rows_loaded": loads[name].rows,
                "version": loads[name].version,
                "expectations": f"{r.passed}/{r.evaluated}",
            }
            for name, r in zip(cleaned, reports, strict=True)
        ]
    )
    summary = {"tables": tables.to_dicts(), "quarantined_values": quarantine.height}
    fp.finish_step(
        step,
        "01_ingest",
        run_dir,
        summary,
        metrics={
            f"{m}.{row['table']}": row[m]
            for row in tables.to_dicts()
            for m in ("rows_in", "rows_loaded", "quarantined")
        },
    )
    return summary


def step_features(
    project_dir: str = ".", run_dir: str = "", mlflow_run_id: str = "", load_id: str = ""
) -> dict[str, Any]:
    """notebooks/02_features.ipynb: build, validate and store the feature table."""
    import featurepipe as fp

    config = fp.load_config(project_dir)
    step = fp.open_step(config, "02_features", mlflow_run_id)
    load_id = load_id or fp.new_run_id()
    warehouse = fp.open_warehouse(config)

    # Read the input tables at their current version (pinned and logged)
    inputs = {name: warehouse.read(name) for name in fp.input_tables(config.features)}
    fp.tracking.log_table_versions(
        {name: (warehouse.location(name), version) for name, (_, version) in inputs.items()},
        context="features",
    )
    features = fp.build_features(
        {name: frame for name, (frame, _) in inputs.items()}, config.features
    )

    # Validate the feature set, then store it
    reports = fp.validate_tables(
        {config.features.name: features.frame}, config.path(config.expectations_dir)
    )
    fp.require_valid(reports)
    load = warehouse.write(config.features.name, features.frame, load_id=load_id, mode="replace")

    target = features.frame[features.target]
    summary = {
        "feature_rows": features.frame.height,
        "excluded_unknown_target": features.excluded,
        "positive_rate": float(target.mean()),
        "features": len(features.columns),
        "feature_table_version": load.version,
        "weather_missing_share": float(features.frame["wx_temp"].is_null().mean()),
        "window_missing_share": float(features.frame["origin_dep_delay_2h"].is_null().mean()),
    }
    fp.finish_step(step, "02_features", run_dir, summary, metrics=dict(summary))
    return summary


def step_train(
    project_dir: str = ".",
    run_dir: str = "",
    mlflow_run_id: str = "",
    load_id: str = "",
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    max_iter: int | None = None,
    learning_rate: float | None = None,
    grid: dict[str, list[Any]] | None = None,
    features_version: int | None = None,
) -> dict[str, Any]:
    """notebooks/03_train.ipynb: grid, train, plot, gate, log, register, save, promote."""
    import featurepipe as fp

    config = fp.load_config(project_dir)
    step = fp.open_step(config, "03_train", mlflow_run_id)
    warehouse = fp.open_warehouse(config)
    spec = config.model
    estimator = estimator or spec.estimator
    shorthand = {"max_iter": max_iter, "learning_rate": learning_rate}
    params = {
        **spec.params,
        **(params or {}),
        **{k: v for k, v in shorthand.items() if v is not None},
    }
    grid = spec.grid if grid is None else grid

    # The feature table, pinned to a version and logged as a dataset input
    table, version = warehouse.read(config.features.name, version=features_version)
    features = fp.describe_features(table.collect(), config.features)
    digest = fp.frame_digest(features.frame)
    fp.registry.log_feature_set(
        config.features.name,
        warehouse.location(config.features.name),
        version,
        digest,
        "training",
        features.frame.height,
    )

    # Grid search (nested runs), then the final fit
    split = dict(
        split=spec.split,
        test_start=spec.test_start,
        group=spec.group,
        test_size=spec.test_size,
        random_state=spec.random_state,
    )
    if grid:
        params, trials = fp.grid_search(
            features, grid, metric=spec.metric, estimator=estimator, params=params,
            validation_size=spec.validation_size, threshold=spec.threshold, **split,
        )  # fmt: skip
        for i, trial in enumerate(trials):
            fp.registry.log_trial(
                f"trial {i}", trial.params, {f"validation_{k}": v for k, v in trial.metrics.items()}
            )
    model = fp.train_model(
        features, estimator=estimator, params=params, threshold=spec.threshold, **split
    )
    fp.tracking.log_params(
        {
            **model.params,
            "estimator": estimator,
            "split": spec.split,
            "test_start": str(spec.test_start),
            "metric": spec.metric,
            "threshold": spec.threshold,
            "features": ",".join(model.columns),
        }
    )
    fp.tracking.log_metrics({f"test_{k}": v for k, v in model.metrics.items()})

    # Test-set plots
    for file_name, figure in fp.plot_model(model).items():
        fp.tracking.log_figure(figure, f"plots/{file_name}")

    # Gates, then save and register as candidate
    gates = fp.quality_gates(model, spec.metric, spec.gates)
    gates_passed = fp.registry.log_gates(gates)
    metadata = {
        "mlflow_run_id": step.run_id,
        "features": model.columns,
        "feature_table": config.features.name,
        "feature_table_version": version,
        "training_data_digest": digest,
        "gates": gates,
    }
    registered_version = fp.registry.log_registered_model(
        model.pipeline,
        registered_name=spec.name,
        alias=spec.alias,
        input_example=fp.model_inputs(features.frame.head(5), model.columns),
        metadata=metadata,
    )
    path = fp.save_model(
        model,
        config.path(config.models_dir),
        spec.name,
        {**metadata, "registered_version": registered_version},
    )
    promotion = (
        fp.registry.promote(
            spec.name, metric=spec.metric, candidate=spec.alias, champion=spec.champion_alias
        )
        if spec.auto_promote
        else None
    )
    summary = {
        **{f"test_{k}": v for k, v in model.metrics.items()},
        "train_rows": model.train_rows,
        "test_rows": model.test_rows,
        "gates_passed": gates_passed,
        "registered": f"{spec.name} v{registered_version} @{spec.alias}",
        "model_file": str(path),
        "promoted": bool(promotion and promotion.promoted),
    }
    fp.finish_step(
        step,
        "03_train",
        run_dir,
        summary,
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
    )
    return summary


def step_predict(
    project_dir: str = ".",
    run_dir: str = "",
    mlflow_run_id: str = "",
    load_id: str = "",
    model_alias: str | None = None,
    model_version: int | None = None,
) -> dict[str, Any]:
    """notebooks/04_predict.ipynb: score with the registered model and store the scores."""
    import featurepipe as fp

    config = fp.load_config(project_dir)
    step = fp.open_step(config, "04_predict", mlflow_run_id)
    load_id = load_id or fp.new_run_id()
    warehouse = fp.open_warehouse(config)

    model = fp.registry.load_registered_model(
        config.model.name, alias=model_alias or config.predict.alias, version=model_version
    )
    inputs = {name: warehouse.read(name) for name in fp.input_tables(config.features)}
    fp.tracking.log_table_versions(
        {name: (warehouse.location(name), version) for name, (_, version) in inputs.items()},
        context="prediction",
    )
    features = fp.build_features(
        {name: frame for name, (frame, _) in inputs.items()},
        config.features,
        with_target=False,
        start=config.predict.start,
        end=config.predict.end,
    )

    scores = fp.predict_frame(
        model.pipeline,
        features,
        threshold=config.predict.threshold,
        model=model.name,
        model_version=model.version,
    )
    load = warehouse.write(config.predict.table, scores, load_id=load_id, mode="replace")

    summary = {
        "scored_rows": scores.height,
        "predicted_late_share": float(scores["prediction"].mean()),
        "mean_probability": float(scores["probability"].mean()),
        "model": f"{model.name} v{model.version}",
        "predictions_table_version": load.version,
    }
    fp.tracking.log_params({"model_version": model.version, "model_alias": model.alias or ""})
    fp.finish_step(
        step,
        "04_predict",
        run_dir,
        summary,
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
    )
    return summary


STEP_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "01_ingest": step_ingest,
    "02_features": step_features,
    "03_train": step_train,
    "04_predict": step_predict,
}


def _detach() -> None:
    """Leave the step's active MLflow run, as a notebook's kernel does when it exits."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run()


def run_plain(project_dir: Path) -> dict[str, float]:
    """Run the four steps in this process, tracked like ``featurepipe.run_flow``.

    Args:
        project_dir: the project folder (holds ``featurepipe.toml``).

    Returns:
        Wall seconds of each step, by step name (``01_ingest`` ... ``04_predict``).
    """
    import featurepipe as fp

    config = fp.load_config(project_dir)
    run_id = fp.new_run_id()
    run_dir = config.path(config.flow.runs_dir) / run_id
    run_dir.mkdir(parents=True)
    experiment_id = fp.tracking.configure(
        config.tracking_uri, config.tracking.experiment, config.path("mlruns")
    )
    parent = fp.tracking.start_flow_run(
        experiment_id,
        f"plain {run_id}",
        params={"steps": ",".join(STEPS)},
        tags={fp.tracking.FLOW_TAG: run_id, "featurepipe.project": config.name},
    )
    seconds: dict[str, float] = {}
    try:
        for name in STEPS:
            child = fp.tracking.create_step_run(experiment_id, parent, name, run_id)
            started = time.perf_counter()
            try:
                STEP_FUNCTIONS[name](
                    project_dir=str(config.project_dir),
                    run_dir=str(run_dir),
                    mlflow_run_id=child,
                    load_id=run_id,
                )
            except BaseException:
                _detach()
                fp.tracking.end_run(child, failed=True)
                raise
            _detach()
            seconds[name] = time.perf_counter() - started
            fp.tracking.end_run(child)
    except BaseException:
        fp.tracking.end_run(parent, failed=True)
        raise
    fp.tracking.end_run(parent)
    return seconds


def main(argv: Sequence[str] | None = None) -> None:
    """Run the plain script on a project and print each step's wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project_dir", nargs="?", default=".", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seconds = run_plain(args.project_dir)
    total = time.perf_counter() - started
    for name, value in seconds.items():
        print(f"{name:<12} {value:8.2f} s")
    print(f"{'whole flow':<12} {total:8.2f} s")


if __name__ == "__main__":
    main()
