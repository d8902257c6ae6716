"""Identifier names: source column names made destination-safe snake_case, deterministically."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["normalize_name", "unique_names"]


def normalize_name(name: str) -> str:
    """A destination-safe snake_case identifier: ``"Dep Time (min)"`` → ``dep_time_min``.

    ASCII letters, digits and underscores only, never starting with a digit
    (``"2nd"`` → ``_2nd``); accents are dropped (``"Café"`` → ``cafe``); camelCase is
    split (``depTime`` → ``dep_time``). Applying it twice changes nothing.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_name)
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", snake).strip("_").lower()
    if not snake:
        snake = "column"
    return f"_{snake}" if snake[0].isdigit() else snake


def unique_names(columns: Sequence[str]) -> dict[str, str]:
    """Original name → normalized name, collisions resolved deterministically.

    A name that normalizes to one already taken gets ``_2``, ``_3`` … in column order,
    so the same columns always get the same names.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        base = normalize_name(column)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names[column] = name
    return names
