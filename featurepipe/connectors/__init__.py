"""Connectors: read sources into raw polars frames."""

from __future__ import annotations

from .files import Extract, extract_file

__all__ = ["Extract", "extract_file"]
