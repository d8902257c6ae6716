"""Destinations under test: Delta and SQLite in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from featurepipe.destinations import Destination, open_destination

KINDS = ["delta", "sqlite"]


def make_destination(kind: str, folder: Path) -> Destination:
    """A fresh, empty destination of one kind."""
    if kind == "sqlite":
        return open_destination("sqlite", path=folder / "warehouse.sqlite")
    return open_destination("delta", path=folder / "warehouse")


@pytest.fixture(params=KINDS)
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    """Each destination kind, empty."""
    yield make_destination(request.param, tmp_path)
