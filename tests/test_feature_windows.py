"""Rolling windows, derived columns and feature functions: only the past is ever seen.

The leakage guard is a hypothesis property: an event's features do not change when
rows that became known after its time are added, removed or altered.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurepipe.config import FeaturesConfig
from featurepipe.errors import FeatureError
from featurepipe.features import build_features, feature_columns, input_tables

T0 = datetime(2013, 1, 1, tzinfo=UTC)

SPEC = FeaturesConfig.model_validate(
    {
        "name": "f",
        "base": "events",
        "event_time": "at",
        "keys": ["id"],
        "columns": ["site"],
        "target": {"name": "late", "column": "delay", "greater_than": 15},
        "derived": {"events": {"known": "at + INTERVAL '1 minute' * delay", "ok": "delay <= 15"}},
        "as_of": [
            {
                "table": "obs",
                "on": "at",
                "by": "site",
                "columns": ["temp"],
                "tolerance": "1h",
                "prefix": "wx_",
            }
        ],  # fmt: skip
        "windows": [
            {
                "name": "site_delay_1h",
                "table": "events",
                "by": ["site"],
                "value": "delay",
                "period": "1h",
                "known_at": "known",
            },  # fmt: skip
            {
                "name": "site_ok_share_2h",
                "table": "events",
                "by": ["site"],
                "value": "ok",
                "period": "2h",
                "known_at": "known",
            },  # fmt: skip
            {
                "name": "site_count_1h",
                "table": "events",
                "by": ["site"],
                "value": "delay",
                "agg": "count",
                "period": "1h",
                "known_at": "known",
            },  # fmt: skip
            {
                "name": "obs_temp_sum_30m",
                "table": "obs",
                "by": ["site"],
                "value": "temp",
                "agg": "sum",
                "period": "30m",
                "known_at": "at",
            },  # fmt: skip
        ],
    }
)

EVENT_SCHEMA = {"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "site": pl.String,
                "delay": pl.Int64}  # fmt: skip
OBS_SCHEMA = {"site": pl.String, "at": pl.Datetime("us", "UTC"), "temp": pl.Int64}


def minute(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def events(rows: list[tuple[int, int, str, int | None]]) -> pl.DataFrame:
    """Rows of (id, minute of the event, site, delay in minutes)."""
    return pl.DataFrame(
        [(i, minute(m), s, d) for i, m, s, d in rows], schema=EVENT_SCHEMA, orient="row"
    )


def obs(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame([(s, minute(m), t) for s, m, t in rows], schema=OBS_SCHEMA, orient="row")


def features_by_id(ev: pl.DataFrame, ob: pl.DataFrame | None = None, **kw) -> dict:
    ob = obs([]) if ob is None else ob
    fs = build_features({"events": ev, "obs": ob}, SPEC, **{"with_target": False, **kw})
    return {row["id"]: row for row in fs.frame.iter_rows(named=True)}


def test_window_counts_only_rows_known_strictly_before_and_never_the_event_itself() -> None:
    ev = events(
        [
            (1, 0, "X", 10),  # known at 10
            (2, 20, "X", 20),  # known at 40
            (3, 40, "X", 0),  # known at 40: exactly at event 3's time, so not before it
            (4, 75, "X", -30),  # departed early, known at 45, before event 4 itself
            (5, 80, "X", None),  # cancelled: never known
            (6, 80, "Y", 5),  # other site
            (7, 120, "X", 0),
        ]
    )
    got = features_by_id(ev)
    assert got[1]["site_delay_1h"] is None and got[1]["site_count_1h"] == 0
    assert got[2]["site_delay_1h"] == 10.0  # event 1, known at 10
    assert got[3]["site_delay_1h"] == 10.0  # events 2 and 3 are known at 40, not before 40
    # event 4 at 75: window [15, 75) holds 2 (at 40) and 3 (at 40); 1 (at 10) is too old,
    # and 4 itself (known at 45) does not count for 4
    assert (got[4]["site_delay_1h"], got[4]["site_count_1h"]) == (10.0, 2)
    # event 5 at 80: window [20, 80) holds 2, 3 and 4
    assert (got[5]["site_delay_1h"], got[5]["site_count_1h"]) == (-10 / 3, 3)
    assert got[6]["site_count_1h"] == 0
    assert got[5]["site_ok_share_2h"] == pytest.approx(3 / 4)  # 1, 3 and 4 were on time
    # event 7 at 120: window [60, 120) is empty (everything known at 10, 40 or 45)
    assert got[7]["site_delay_1h"] is None and got[7]["site_count_1h"] == 0


def test_window_over_another_table_and_its_period_bounds() -> None:
    ev = events([(1, 60, "X", 0), (2, 60, "Y", 0)])
    ob = obs([("X", 29, 100), ("X", 30, 1), ("X", 59, 2), ("X", 60, 50), ("Y", 10, 7)])
    got = features_by_id(ev, ob)
    assert got[1]["obs_temp_sum_30m"] == 3  # [30, 60): 30 in, 60 out
    assert got[2]["obs_temp_sum_30m"] == 0
    assert got[1]["wx_temp"] == 50  # the as-of join takes observations at the event time


def test_prediction_window_events_still_see_every_earlier_row() -> None:
    """Filtering the events to score must not filter the rows the windows look at."""
    ev = events([(1, 0, "X", 10), (2, 30, "X", 0), (3, 50, "X", None)])
    full = features_by_id(ev)
    scoring = features_by_id(ev, start=minute(30))
    assert sorted(scoring) == [2, 3]
    assert scoring[2] == full[2] and scoring[3] == full[3]
    assert scoring[3]["site_delay_1h"] == 5.0  # event 1 (known at 10) and 2 (known at 30)


def test_output_is_sorted_and_the_same_whatever_the_input_order() -> None:
    rows = [(i, (i * 37) % 200, "XY"[i % 2], (i * 13) % 50 - 10) for i in range(60)]
    one = build_features({"events": events(rows), "obs": obs([])}, SPEC).frame
    other = build_features({"events": events(rows[::-1]), "obs": obs([])}, SPEC).frame
    assert one.equals(other)
    assert one["at"].is_sorted()


# ---- the leakage guard --------------------------------------------------------------

SITES = st.sampled_from(["X", "Y"])
DELAYS = st.one_of(st.none(), st.integers(-30, 120))


@st.composite
def past_and_future(draw: st.DrawFn) -> tuple[int, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Events and observations split at a cutoff: the future ones became known after it."""
    cutoff = draw(st.integers(60, 400))
    past = draw(st.lists(st.tuples(st.integers(0, cutoff - 1), SITES, DELAYS), max_size=25))
    future = draw(  # after the cutoff and known no earlier than their own time
        st.lists(
            st.tuples(
                st.integers(cutoff, cutoff + 300), SITES, st.one_of(st.none(), st.integers(0, 90))
            ),
            max_size=25,
        )
    )
    ev_past = events([(i, m, s, d) for i, (m, s, d) in enumerate(past)])
    ev_future = events([(1000 + i, m, s, d) for i, (m, s, d) in enumerate(future)])
    ob_past = draw(st.lists(st.tuples(SITES, st.integers(0, cutoff - 1), st.integers(-20, 40))))
    return cutoff, ev_past, ev_future, obs(ob_past)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=past_and_future(), alter=st.integers(0, 500), future_obs=st.integers(0, 40))
def test_features_of_an_event_ignore_every_row_known_after_its_time(
    data: tuple[int, pl.DataFrame, pl.DataFrame, pl.DataFrame], alter: int, future_obs: int
) -> None:
    cutoff, ev_past, ev_future, ob_past = data
    ob_future = obs([("X", cutoff + 5, future_obs), ("Y", cutoff, -future_obs)])

    def past_features(ev: pl.DataFrame, ob: pl.DataFrame) -> pl.DataFrame:
        frame = build_features({"events": ev, "obs": ob}, SPEC, with_target=False).frame
        return frame.filter(pl.col("at") < minute(cutoff)).sort("id")

    alone = past_features(ev_past, ob_past)
    added = past_features(pl.concat([ev_past, ev_future]), pl.concat([ob_past, ob_future]))
    altered = past_features(
        # later delays stay known after the cutoff; the altered value is any
        pl.concat([ev_past, ev_future.with_columns(pl.col("delay") + alter)]),
        pl.concat([ob_past, ob_future.with_columns(pl.col("temp") * 3)]),
    )
    removed = past_features(pl.concat([ev_past, ev_future.head(ev_future.height // 2)]), ob_past)
    assert alone.height == ev_past.height
    assert added.equals(alone)
    assert altered.equals(alone)
    assert removed.equals(alone)


# Every window and as-of kind, per event: an entity lookup `into` the events feeds the
# time a delay becomes known (a site's reporting lag), one window counts from its own
# `at` column, and the as-of join and a `sum` window read another table.
LAGS = pl.DataFrame({"code": ["X", "Y"], "lag": [0, 7]})
PER_EVENT_SPEC = FeaturesConfig.model_validate(
    {
        **SPEC.model_dump(),
        "lookups": [{"table": "sites", "on": "site", "key": "code", "columns": ["lag"],
                     "prefix": "site_", "into": "events"}],
        "derived": {"events": {"known": "at + INTERVAL '1 minute' * (delay + site_lag)",
                               "ok": "delay <= 15", "decided": "at"}},
        "windows": [*SPEC.model_dump()["windows"],
                    {"name": "site_delay_sum_90m", "table": "events", "by": ["site"],
                     "value": "delay", "agg": "sum", "period": "90m", "known_at": "known",
                     "at": "decided"}],
    }
)  # fmt: skip
EVENT_ROWS = st.tuples(st.integers(0, 300), SITES, DELAYS)


@st.composite
def event_and_changes(draw: st.DrawFn) -> dict:
    """Events, observations, one chosen event, and rows to add after its time."""
    rows = draw(st.lists(EVENT_ROWS, min_size=1, max_size=30))
    chosen = draw(st.integers(0, len(rows) - 1))
    at = rows[chosen][0]
    later = st.tuples(st.integers(1, 200), SITES, st.one_of(st.none(), st.integers(0, 90)))
    return {
        "events": events([(i, m, s, d) for i, (m, s, d) in enumerate(rows)]),
        "obs": obs(draw(st.lists(st.tuples(SITES, st.integers(0, 300), st.integers(-20, 40))))),
        "chosen": chosen,
        "added": events([(1000 + i, at + m, s, d) for i, (m, s, d) in enumerate(draw(
            st.lists(later, max_size=10)))]),
        "added_obs": obs([(s, at + m, t) for m, s, t in draw(
            st.lists(st.tuples(st.integers(1, 100), SITES, st.integers(-20, 40)), max_size=5))]),
        "drop": draw(st.sets(st.integers(0, 40))),
        "alter": draw(st.integers(1, 500)),
    }  # fmt: skip


def _features_of(spec: FeaturesConfig, chosen: int, ev: pl.DataFrame, ob: pl.DataFrame) -> dict:
    tables = {"events": ev, "obs": ob, "sites": LAGS}
    frame = build_features(tables, spec, with_target=False).frame
    (row,) = frame.filter(pl.col("id") == chosen).iter_rows(named=True)
    return row


def _moved_by_later_rows(spec: FeaturesConfig, case: dict) -> dict[str, dict]:
    """The chosen event's features that change when rows known after its time are
    added, removed or altered: change -> {feature: (before, after)}."""
    ev, ob, chosen = case["events"], case["obs"], case["chosen"]
    at = ev.filter(pl.col("id") == chosen)["at"][0]
    lag = pl.col("site").replace_strict(dict(LAGS.iter_rows()), return_dtype=pl.Int64)
    known = pl.col("at") + pl.duration(minutes=pl.col("delay") + lag)
    # after its time: other events known later (or never), and those also later themselves
    late = (pl.col("id") != chosen) & (known.is_null() | (known > at))
    future = late & (pl.col("at") > at)
    drop = pl.int_range(pl.len()).is_in(list(case["drop"]))
    before = _features_of(spec, chosen, ev, ob)
    after = {
        "added": _features_of(
            spec, chosen, pl.concat([ev, case["added"]]), pl.concat([ob, case["added_obs"]])
        ),
        "removed": _features_of(
            spec, chosen, ev.filter(~(future & drop)), ob.filter(~((pl.col("at") > at) & drop))
        ),
        "altered": _features_of(
            spec,
            chosen,  # delays grow, so what was known after its time stays known after it
            ev.with_columns(pl.when(late).then(pl.col("delay") + case["alter"]).otherwise("delay")),
            ob.with_columns(
                pl.when(pl.col("at") > at)
                .then(pl.col("temp") * 3 + case["alter"])
                .otherwise("temp")
            ),
        ),
    }
    return {
        change: {k: (before[k], row[k]) for k in before if row[k] != before[k]}
        for change, row in after.items()
        if row != before
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=event_and_changes())
def test_one_events_features_ignore_rows_added_removed_or_altered_after_its_time(
    case: dict,
) -> None:
    """For a random event, no row known after its time moves any of its features."""
    assert set(_features_of(PER_EVENT_SPEC, case["chosen"], case["events"], case["obs"])) == {
        "id", "at", *feature_columns(PER_EVENT_SPEC)
    }  # fmt: skip
    assert _moved_by_later_rows(PER_EVENT_SPEC, case) == {}


def test_the_leakage_guard_catches_a_window_that_counts_rows_before_they_are_known() -> None:
    """Counting rows at their own time, not when they became known, leaks: event 1
    departs at 0 but its delay is known only at 50, after event 2's time (30)."""
    peeking = PER_EVENT_SPEC.model_copy(
        update={"windows": [PER_EVENT_SPEC.windows[0].model_copy(update={"known_at": "at"})]}
    )
    case = {
        "events": events([(1, 0, "X", 50), (2, 30, "X", 0)]), "obs": obs([]), "chosen": 2,
        "added": events([]), "added_obs": obs([]), "drop": set(), "alter": 100,
    }  # fmt: skip
    assert _moved_by_later_rows(PER_EVENT_SPEC, case) == {}
    assert _moved_by_later_rows(peeking, case) == {"altered": {"site_delay_1h": (50.0, 150.0)}}


# ---- derived columns and feature functions ----------------------------------------


def test_derived_sql_errors_name_the_table_and_column() -> None:
    spec = SPEC.model_copy(update={"derived": {"events": {"known": "at +* nonsense ("}}})
    # model_copy skips validation: fine for plain dicts of strings
    with pytest.raises(FeatureError, match=r"derived\.events\.known"):
        build_features({"events": events([]), "obs": obs([])}, spec)
    spec = SPEC.model_copy(update={"derived": {"nowhere": {"x": "1"}}})
    with pytest.raises(FeatureError, match="nowhere"):
        build_features({"events": events([]), "obs": obs([])}, spec)


def test_window_period_must_be_a_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        FeaturesConfig.model_validate(
            {**SPEC.model_dump(), "windows": [{**SPEC.windows[0].model_dump(), "period": "2x"}]}
        )


def test_function_feature_escape_hatch(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_features.py").write_text(
        textwrap.dedent(
            """
            import polars as pl

            def add_busy(events: pl.LazyFrame) -> pl.LazyFrame:
                return events.with_columns((pl.len().over("site") > 1).alias("busy"))

            def wrong(events):
                return events.collect()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = FeaturesConfig.model_validate(
        {
            **SPEC.model_dump(),
            "functions": [{"function": "my_features:add_busy", "columns": ["busy"]}],
        }
    )
    assert feature_columns(spec)[-1] == "busy"
    fs = build_features(
        {"events": events([(1, 0, "X", 1), (2, 5, "X", 1), (3, 9, "Y", 1)]), "obs": obs([])}, spec
    )
    assert fs.boolean == ["busy"]
    assert dict(fs.frame.select("id", "busy").iter_rows()) == {1: True, 2: True, 3: False}
    for function, message in (("my_features:wrong", "not a polars LazyFrame"),
                              ("no_such_module:f", "cannot import")):  # fmt: skip
        bad = FeaturesConfig.model_validate(
            {**spec.model_dump(), "functions": [{"function": function, "columns": ["busy"]}]}
        )
        with pytest.raises(FeatureError, match=message):
            build_features({"events": events([]), "obs": obs([])}, bad)
    sys.modules.pop("my_features", None)
    assert input_tables(spec) == ["events", "obs"]
