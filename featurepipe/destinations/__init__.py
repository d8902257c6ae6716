"""Destinations: where typed, validated tables are loaded."""

from __future__ import annotations

from .delta import DeltaDestination, LoadResult

__all__ = ["DeltaDestination", "LoadResult"]
