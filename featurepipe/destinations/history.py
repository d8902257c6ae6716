"""Past versions of PostgreSQL and SQLite tables, for pinned reads after replace and merge.

A table's loads are numbered by their sequence number in the loads table. Between two
replaces the table is one *generation*: the rows of its current generation live in the
table itself; a replace renames them to ``_fp_v<first>`` (``first``: the sequence number
of the load that began the generation, recorded in ``_fp_archive`` with the generation's
last sequence number and schema), so replacing costs no copy. A merge first copies the
rows it updates or deletes into ``_fp_h<first>`` with ``_fp_superseded``, the sequence
number of that merge. A read as of version ``v`` then takes, from the generation holding
``v``, the rows loaded at or before ``v`` and the history rows loaded at or before ``v``
and superseded after it.

Tables loaded before featurepipe kept history (``history_from`` in ``_fp_tables``) keep
the older rule for earlier versions: readable while every later load only appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..errors import DestinationError
from .base import pinned_load_ids

__all__ = ["SUPERSEDED", "ReadPlan", "generation_start", "history_name", "plan_read", "rows_name"]

SUPERSEDED = "_fp_superseded"  # history tables: the load that replaced or deleted the row


def rows_name(first: int) -> str:
    """The table holding an archived generation's rows."""
    return f"_fp_v{first}"


def history_name(first: int) -> str:
    """The table holding the rows merges of a generation updated or deleted."""
    return f"_fp_h{first}"


def generation_start(loads: Sequence[tuple[int, str, str]]) -> int | None:
    """The sequence number of the load that began the current generation: the latest
    replace, or the table's first load (``loads``: (seq, load id, disposition) in order)."""
    if not loads:
        return None
    return max((seq for seq, _, mode in loads if mode == "replace"), default=loads[0][0])


@dataclass(frozen=True)
class ReadPlan:
    """Where a pinned read finds its rows.

    Attributes:
        version: the version read.
        rows_table: the table holding the generation's rows (the table itself when current).
        history_table: its history table (it may not exist), or ``None`` for none.
        load_ids: the loads whose rows are visible (``None``: every row of ``rows_table``).
        schema: the polars schema of the generation (``None``: the table's current one).
    """

    version: int
    rows_table: str
    history_table: str | None
    load_ids: list[str] | None
    schema: pl.Schema | None = None


def plan_read(
    table: str,
    version: int | None,
    loads: Sequence[tuple[int, str, str]],
    archived: Sequence[tuple[int, int, pl.Schema]],
    history_from: int | None,
) -> ReadPlan:
    """Which tables and loads a read of ``table`` as of ``version`` takes.

    Args:
        table: the table name.
        version: the load sequence number to read as of; ``None`` for the latest.
        loads: the table's committed loads as (seq, load id, disposition), in order.
        archived: the table's archived generations as (first seq, last seq, schema).
        history_from: the first load made while history was kept (``None``: none yet).

    Raises:
        DestinationError: the table did not exist at ``version``, or that version was
            not kept; the message names the versions that can be read.
    """
    if not loads:
        raise DestinationError(f"table {table!r} has no committed load")
    latest, start = loads[-1][0], generation_start(loads)
    assert start is not None  # noqa: S101 - loads is not empty
    if version is not None and version < loads[0][0]:
        raise DestinationError(
            f"table {table!r} at version {version}: the table's first load is version {loads[0][0]}"
        )
    if version is None or version >= latest:
        return ReadPlan(latest, table, None, None)
    if history_from is None or version < history_from:
        pinned, ids = pinned_load_ids(table, version, loads)
        return ReadPlan(pinned, table, None, ids)
    first, last, schema = start, None, None
    if version < start:
        found = [(f, n, s) for f, n, s in archived if f <= version < n]
        if not found:
            raise DestinationError(
                f"table {table!r} at version {version}: that version is no longer kept (its "
                f"replaced rows were dropped); versions {start} to {latest} can be read"
            )
        first, last, schema = found[0]
    seqs = [seq for seq, _, _ in loads if first <= seq <= version]
    ids = [load_id for seq, load_id, _ in loads if first <= seq <= version]
    rows = table if last is None else rows_name(first)
    return ReadPlan(seqs[-1], rows, history_name(first), ids, schema)
