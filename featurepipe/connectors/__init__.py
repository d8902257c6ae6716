"""Connectors: pull sources into raw polars frames, in bounded batches, with their state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import Batch, Extraction, Lineage, SourceBase, Stage
from .files import Extract, FileSource, extract_file
from .http import HttpSource
from .push_bucket import PushSource
from .sql import SqlSource

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..config import SourceConfig

__all__ = [
    "CONNECTORS",
    "Batch",
    "Extract",
    "Extraction",
    "FileSource",
    "HttpSource",
    "Lineage",
    "PushSource",
    "SourceBase",
    "SqlSource",
    "Stage",
    "connector_for",
    "extract_file",
    "extract_source",
]

CONNECTORS: dict[str, type[SourceBase[Any]]] = {
    "file": FileSource,
    "sql": SqlSource,
    "http": HttpSource,
    "push": PushSource,
}
"""Every connector by its ``kind`` in featurepipe.toml (push sources are read from their bucket)."""


def connector_for(name: str, source: SourceConfig) -> SourceBase[Any]:
    """The connector that reads one configured source.

    Raises:
        ConfigError: no connector handles the source's kind.
    """
    try:
        connector = CONNECTORS[source.kind]
    except KeyError as exc:
        raise ConfigError(
            f"sources.{name}: no pull connector for kind {source.kind!r}; "
            f"pull kinds are {', '.join(CONNECTORS)}."
        ) from exc
    return connector(name, source)


def extract_source(
    name: str,
    source: SourceConfig,
    state: Mapping[str, Any] | None = None,
    *,
    load_id: str = "",
) -> Extraction:
    """Start pulling one source from its last committed state.

    Args:
        name: the source's (and table's) name.
        source: its validated configuration.
        state: the state committed after its last load (``StateStore.read``); empty or
            ``None`` pulls everything.
        load_id: the load these rows belong to, recorded in the lineage.

    Returns:
        The extraction: iterate it for bounded batches, or ``collect()`` it; commit its
        ``state`` only after the destination load committed.
    """
    return connector_for(name, source).extract(state, load_id=load_id)
