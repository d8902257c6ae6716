"""Point-in-time features: as-of joins see only the past; lookups stay one-to-one."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from featurepipe.config import FeaturesConfig
from featurepipe.errors import FeatureError
from featurepipe.features import build_features, input_tables

SPEC = FeaturesConfig.model_validate(
    {
        "name": "f",
        "base": "events",
        "event_time": "at",
        "keys": ["id"],
        "timezone": "America/New_York",
        "calendar": ["hour", "weekday", "month"],
        "columns": ["site"],
        "target": {"name": "late", "column": "delay", "greater_than": 15},
        "lookups": [{"table": "things", "on": "thing", "columns": ["size"], "prefix": "thing_"}],
        "as_of": [
            {
                "table": "obs",
                "on": "at",
                "by": "site",
                "columns": ["temp"],
                "tolerance": "2h",
                "prefix": "wx_",
            }
        ],
    }
)


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2013, 1, 1, hour, minute, tzinfo=UTC)


def tables(events: pl.DataFrame, obs: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    things = pl.DataFrame({"thing": ["a", "b"], "size": [10, 20]})
    if obs is None:
        obs = pl.DataFrame({"site": ["X"], "at": [t(0)], "temp": [0.0]})
    return {"events": events, "things": things, "obs": obs}


def events(rows: list[tuple[int, datetime, str, str | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "site": pl.String,
                "thing": pl.String, "delay": pl.Float64},
        orient="row",
    )  # fmt: skip


def test_as_of_join_takes_the_latest_past_observation_never_a_future_one() -> None:
    obs = pl.DataFrame(
        {
            "site": ["X", "X", "X", "Y"],
            "at": [t(9), t(10), t(11), t(10)],
            "temp": [9.0, 10.0, 11.0, -1.0],
        }
    )
    ev = events(
        [
            (1, t(10, 30), "X", "a", 20.0),  # latest at or before 10:30 is 10:00
            (2, t(10), "X", "b", 0.0),  # exactly at an observation: that one
            (3, t(8, 59), "X", "a", 0.0),  # before any observation: nothing
            (4, t(13, 30), "X", "a", 0.0),  # 11:00 is 2.5h old, beyond the 2h tolerance
            (5, t(10, 5), "Y", None, 0.0),  # other site; unknown thing
        ]
    )
    fs = build_features(tables(ev, obs), SPEC)
    got = dict(fs.frame.select("id", "wx_temp").iter_rows())
    assert got == {1: 10.0, 2: 10.0, 3: None, 4: None, 5: -1.0}
    sizes = dict(fs.frame.select("id", "thing_size").iter_rows())
    assert sizes == {1: 10, 2: 20, 3: 10, 4: 10, 5: None}


def test_future_observations_never_change_a_feature() -> None:
    ev = events([(1, t(10, 30), "X", "a", 20.0)])
    past = pl.DataFrame({"site": ["X"], "at": [t(10)], "temp": [1.0]})
    future = pl.DataFrame({"site": ["X", "X"], "at": [t(10, 31), t(12)], "temp": [99.0, 98.0]})
    alone = build_features(tables(ev, past), SPEC).frame
    with_future = build_features(tables(ev, pl.concat([past, future])), SPEC).frame
    assert alone.equals(with_future)


def test_target_calendar_and_excluded_count() -> None:
    ev = events(
        [
            (1, t(10), "X", "a", 16.0),  # 05:00 in New York, Tuesday
            (2, t(11), "X", "a", 15.0),
            (3, t(12), "X", "a", None),  # cancelled: excluded and counted
        ]
    )
    fs = build_features(tables(ev), SPEC)
    assert fs.excluded == 1
    assert fs.frame.select("id", "late", "hour", "weekday", "month").rows() == [
        (1, 1, 5, 2, 1),
        (2, 0, 6, 2, 1),
    ]
    assert fs.categorical == ["site"]
    assert fs.numeric == ["hour", "weekday", "month", "thing_size", "wx_temp"]
    scoring = build_features(tables(ev), SPEC, with_target=False, start=t(11))
    assert scoring.target is None and scoring.excluded == 0
    assert scoring.frame["id"].to_list() == [2, 3]


def test_duplicate_lookup_key_and_missing_table_are_errors() -> None:
    ev = events([(1, t(10), "X", "a", 1.0)])
    bad = tables(ev)
    bad["things"] = pl.DataFrame({"thing": ["a", "a"], "size": [1, 2]})
    with pytest.raises(FeatureError):
        build_features(bad, SPEC)
    with pytest.raises(FeatureError, match="need table 'obs'"):
        build_features({"events": ev, "things": bad["things"]}, SPEC)
    assert input_tables(SPEC) == ["events", "things", "obs"]


def test_lookup_into_another_table_feeds_its_derived_columns_and_is_no_feature() -> None:
    """`into` joins an entity's columns into a table before its derived columns; the
    keys may have different names and types (text events, categorical entities)."""
    spec = FeaturesConfig.model_validate(
        {
            **SPEC.model_dump(),
            "lookups": [
                *SPEC.model_dump()["lookups"],
                {"table": "sites", "on": "site", "key": "code", "columns": ["shift"],
                 "prefix": "site_", "into": "events"},
            ],
            "derived": {"events": {"shifted": "delay + site_shift"}},
            "columns": ["site", "shifted"],
        }
    )  # fmt: skip
    ev = events([(1, t(10), "X", "a", 20.0), (2, t(11), "Y", "b", 5.0), (3, t(12), "Z", "a", 1.0)])
    given = tables(ev)
    given["sites"] = pl.DataFrame(
        {"code": ["X", "Y"], "shift": [100, -5]}, schema_overrides={"code": pl.Categorical}
    )
    fs = build_features(given, spec)
    assert dict(fs.frame.select("id", "shifted").iter_rows()) == {1: 120.0, 2: 0.0, 3: None}
    assert "site_shift" not in fs.frame.columns and "site_shift" not in fs.columns
    assert input_tables(spec) == ["events", "things", "sites", "obs"]
    cycle = spec.model_copy(
        update={"lookups": [*spec.lookups, spec.lookups[-1].model_copy(
            update={"table": "events", "key": "site", "into": "sites", "on": "code"})]}
    )  # fmt: skip
    with pytest.raises(FeatureError, match="cycle"):
        build_features(given, cycle)
