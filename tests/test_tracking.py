"""MLflow tracking on a real MLflow store: table versions logged as dataset inputs whose
sources say where each table lives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from featurepipe import registry, tracking

PG_TABLE = "postgresql://fp@127.0.0.1:5432/test#features.flights"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.configure(uri, "test", tmp_path / "mlruns")
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


def test_dataset_sources_keep_locations_that_have_a_scheme(store, tmp_path) -> None:
    local = tmp_path / "warehouse" / "weather"
    tables = {
        "weather": (str(local), 3),
        "planes": ("s3://bucket/warehouse/planes", 1),
        "flights": (PG_TABLE, 7),
    }
    with mlflow.start_run() as run:
        tracking.log_table_versions(tables, context="features")
        registry.log_feature_set("features", f"{PG_TABLE}_features", 4, "abc", "training", 10)
    inputs = store.get_run(run.info.run_id).inputs.dataset_inputs
    sources = {
        i.dataset.name: (i.dataset.source_type, json.loads(i.dataset.source)["uri"]) for i in inputs
    }
    assert sources == {
        "weather@v3": ("local", local.resolve().as_uri()),
        "planes@v1": ("s3", "s3://bucket/warehouse/planes"),
        "flights@v7": ("featurepipe_table", PG_TABLE),
        "features@v4": ("featurepipe_table", f"{PG_TABLE}_features"),
    }
