"""A project's destination, opened from its configuration, and pinned reads of its tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .config import Config, load_config
from .destinations import Destination, open_destination

__all__ = ["open_warehouse", "read_table"]


def open_warehouse(config: Config) -> Destination:
    """The destination a project loads into, as ``[destination]`` in featurepipe.toml sets it.

    Raises:
        DestinationError: the destination kind or its options are invalid.
        ConfigError: a setting it needs is missing (e.g. the URL's environment variable).
    """
    return open_destination(**config.destination_options())


def read_table(
    name: str, version: int | None = None, *, project: str | Path | Config = "."
) -> pl.DataFrame:
    """Read a loaded table, as of a version if given.

    Args:
        name: the table name.
        version: a Delta version, or on PostgreSQL and SQLite the load sequence number a
            ``LoadResult.version`` or the loads table reports; ``None`` reads the latest.
        project: the project folder (or its featurepipe.toml, or a loaded ``Config``).

    Returns:
        The table's rows, lineage columns ``_fp_load_id`` and ``_fp_loaded_at`` included.

    Raises:
        DestinationError: the table or the version does not exist, or cannot be read.
    """
    config = project if isinstance(project, Config) else load_config(project)
    frame, _ = open_warehouse(config).read(name, version)
    return frame.collect()
