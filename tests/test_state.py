"""Committed source state: exact round trips, atomic replacement, clear errors."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from featurepipe.errors import StateError
from featurepipe.state import StateStore


def test_state_round_trips_cursor_types_exactly(tmp_path) -> None:
    store = StateStore(tmp_path / "warehouse")
    assert store.read("orders") == {}  # never committed: pull everything
    state = {
        "cursor": {"column": "at", "value": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)},
        "keys": [[1, "a"], [2, "b"]],
        "day": date(2026, 1, 2),
        "amount": Decimal("10.25"),
        "raw": b"\x00\xff",
    }
    file = store.commit("orders", state)
    assert file == tmp_path / "warehouse" / "_state" / "orders.json"
    assert store.read("orders") == state
    assert store.sources() == ["orders"]


def test_commit_replaces_atomically_and_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    store = StateStore(tmp_path)
    store.commit("orders", {"cursor": 1})

    def crash(src, dst):  # a crash at the rename: the old state must survive whole
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StateError, match=r"source 'orders': cannot commit its state.*disk gone"):
        store.commit("orders", {"cursor": 2})
    monkeypatch.undo()
    assert store.read("orders") == {"cursor": 1}
    assert [p.name for p in store.path.iterdir()] == ["orders.json"]


def test_unreadable_state_and_bad_names_are_clear_errors(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.path.mkdir(parents=True)
    (store.path / "orders.json").write_text("{not json")
    with pytest.raises(
        StateError, match=r"source 'orders': cannot read its state.*Delete the file"
    ):
        store.read("orders")
    with pytest.raises(StateError, match="not usable as a state file name"):
        store.read("../etc/passwd")
    with pytest.raises(StateError, match="cannot commit"):
        store.commit("orders", {"when": object()})
