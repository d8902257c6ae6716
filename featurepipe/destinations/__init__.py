"""Destinations: where typed, validated tables are loaded, atomically and idempotently."""

from __future__ import annotations

from typing import Any

from ..errors import DestinationError
from .base import (
    DISPOSITIONS,
    LOAD_ID,
    LOADED_AT,
    LOADS_TABLE,
    Destination,
    Disposition,
    LoadResult,
)
from .delta import DeltaDestination

__all__ = [
    "DISPOSITIONS",
    "LOADED_AT",
    "LOADS_TABLE",
    "LOAD_ID",
    "DeltaDestination",
    "Destination",
    "Disposition",
    "LoadResult",
    "open_destination",
]

KINDS = ("delta", "postgres", "sqlite")


def open_destination(kind: str = "delta", **options: Any) -> Destination:
    """Open a destination by kind.

    Args:
        kind: ``delta`` (options ``path``, ``storage_options``), ``postgres`` (``url``,
            ``schema``) or ``sqlite`` (``path``).
        **options: the kind's options, as ``Config.destination_options()`` gives them.

    Returns:
        The destination; nothing is connected or created until it is used.

    Raises:
        DestinationError: unknown kind or missing options.
    """
    try:
        if kind == "delta":
            return DeltaDestination(**options)
        if kind == "sqlite":
            from .sqlite import SqliteDestination

            return SqliteDestination(**options)
        if kind == "postgres":
            from .postgres import PostgresDestination

            return PostgresDestination(**options)
    except TypeError as exc:
        raise DestinationError(
            f"destination {kind!r}: bad options {sorted(options)}: {exc}"
        ) from exc
    raise DestinationError(f"unknown destination kind {kind!r}; use one of {KINDS}")
