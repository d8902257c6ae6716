"""The schema store: versioned JSON files, read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurepipe.errors import SchemaError
from featurepipe.schema import ColumnType, SchemaStore, apply_schema, normalize_name, unique_names


def test_every_inferred_type_round_trips_through_the_store(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "b": ["yes", "no"], "i": ["1", "300"], "u": ["12345678901234567890", "1"],
            "m": ["$1.50", "$2.00"], "f": ["1.5", "2"], "p": ["5%", "7%"],
            "d": ["2013-01-01", "2013-01-02"], "t": ["10:00", "11:00"],
            "ts": ["2013-01-01T10:00:00Z", "2013-01-01T11:00:00.123456789Z"],
            "ld": ["2013-01-01 10:00", "2013-01-01 11:00"], "du": ["PT1H", "P1D"],
            "j": ['{"a": [1]}', '{"a": []}'], "c": ["x", "x"], "s": ["x", "y"], "e": [None, None],
        }
    )  # fmt: skip
    typed = apply_schema("all", frame, load_id="L1")
    store = SchemaStore(tmp_path)
    saved = store.save(typed.schema)
    assert saved.version == 1
    assert (tmp_path / "all" / "000001.json").is_file()
    assert store.load("all") == saved
    assert store.load("all").columns == typed.schema.columns
    assert {c.type.logical for c in saved.columns.values()} >= {
        "bool", "int16", "uint64", "decimal", "float", "date", "time", "datetime",
        "local_datetime", "duration", "json", "categorical", "text",
    }  # fmt: skip
    assert store.save(typed.schema).version == 1  # unchanged: no new version


def test_a_broken_schema_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "000001.json").write_text("{not json")
    with pytest.raises(SchemaError, match="000001.json: unreadable schema file"):
        SchemaStore(tmp_path).load("t")
    with pytest.raises(SchemaError, match="no schema version 7"):
        SchemaStore(tmp_path).load("t", version=7)


def test_column_type_json_is_plain_json() -> None:
    ctype = ColumnType.of("json", dtype=pl.Struct({"a": pl.List(pl.Decimal(5, 2))}))
    assert ColumnType.from_json(json.loads(json.dumps(ctype.to_json()))) == ctype


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Dep Time (min)", "dep_time_min"), ("depTime", "dep_time"), ("2nd", "_2nd"),
     ("Café", "cafe"), ("!!!", "column"), ("already_snake", "already_snake")],
)  # fmt: skip
def test_normalize_name(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


@given(st.lists(st.text(max_size=8), max_size=12, unique=True))
def test_names_are_safe_unique_deterministic_and_stable(columns) -> None:
    names = unique_names(columns)
    assert len(set(names.values())) == len(columns)
    assert all(n.isascii() and n.replace("_", "a").isalnum() for n in names.values())
    assert all(not n[0].isdigit() for n in names.values())
    assert unique_names(columns) == names
    assert unique_names(list(names.values())) == {n: n for n in names.values()}


def test_config_names_the_same_types_and_null_tokens_as_the_schema_package() -> None:
    from typing import get_args

    from featurepipe import config
    from featurepipe.schema import DEFAULT_NULL_VALUES, LOGICAL_TYPES
    from featurepipe.schema.types import ALIASES

    assert config.DEFAULT_NULL_VALUES == DEFAULT_NULL_VALUES
    assert set(get_args(config.LogicalType)) == set(LOGICAL_TYPES) | set(ALIASES)
