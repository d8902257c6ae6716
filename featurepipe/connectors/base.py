"""The source protocol every pull connector follows: bounded batches out, a new state back."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

import polars as pl
from pydantic import BaseModel

from ..errors import SourceError
from ..schema.text import concat_raw

__all__ = [
    "Batch",
    "CursorTracker",
    "Extraction",
    "Lineage",
    "SourceBase",
    "Stage",
    "read_batches",
]

Stage = Literal["alpha", "beta", "stable"]
OptionsT = TypeVar("OptionsT", bound=BaseModel)
# A connector's reader: yields batches, returns the state to commit once they are loaded.
BatchReader = Generator["Batch", None, dict[str, Any]]


@dataclass(frozen=True)
class Batch:
    """At most ``batch_rows`` rows of one source, and where they were read."""

    frame: pl.DataFrame
    location: str


@dataclass(frozen=True)
class Lineage:
    """Where an extraction came from: recorded in the state and the step summary."""

    source: str
    kind: str
    load_id: str
    extracted_at: datetime
    locations: tuple[str, ...]
    rows: int

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON state and MLflow params."""
        return {
            "source": self.source,
            "kind": self.kind,
            "load_id": self.load_id,
            "extracted_at": self.extracted_at.isoformat(),
            "locations": list(self.locations),
            "rows": self.rows,
        }


class Extraction:
    """One pull of one source: its batches, read lazily, and the state they lead to.

    Iterate it once to stream the batches (memory holds one batch at a time), or call
    :meth:`collect` for the whole table. :attr:`state` is known once every batch has
    been read; commit it with ``StateStore.commit`` only after the load committed.
    """

    def __init__(self, source: str, kind: str, load_id: str, reader: BatchReader) -> None:
        self.source = source
        self.kind = kind
        self.load_id = load_id
        self.extracted_at = datetime.now(UTC)
        self._reader = reader
        self._state: dict[str, Any] | None = None
        self._started = False
        self._locations: dict[str, None] = {}
        self._rows = 0

    def __iter__(self) -> Iterator[pl.DataFrame]:
        if self._started:
            raise SourceError(
                f"source {self.source!r}: this extraction was already read; extract again."
            )
        self._started = True
        state = yield from self._frames()
        self._state = {**state, "lineage": self.lineage.as_dict()}

    def _frames(self) -> Generator[pl.DataFrame, None, dict[str, Any]]:
        reader = self._reader
        while True:
            try:
                batch = next(reader)
            except StopIteration as stop:
                return dict(stop.value or {})
            self._locations.setdefault(batch.location)
            self._rows += batch.frame.height
            if batch.frame.height or batch.frame.width:
                yield batch.frame

    def collect(self) -> pl.DataFrame:
        """Every batch in one frame (for tables that fit in memory)."""
        return concat_raw(self)

    @property
    def rows(self) -> int:
        """Rows read so far."""
        return self._rows

    @property
    def lineage(self) -> Lineage:
        """Source, load id, extraction time and the locations read so far."""
        return Lineage(
            source=self.source,
            kind=self.kind,
            load_id=self.load_id,
            extracted_at=self.extracted_at,
            locations=tuple(self._locations),
            rows=self._rows,
        )

    @property
    def state(self) -> dict[str, Any]:
        """The state to commit after the load, once every batch has been read.

        Raises:
            SourceError: the batches have not all been read yet.
        """
        if self._state is None:
            raise SourceError(
                f"source {self.source!r}: read every batch before taking the new state; "
                "committing it earlier would skip the rows not yet loaded."
            )
        return self._state


class SourceBase(ABC, Generic[OptionsT]):
    """A pull connector: reads one configured source in bounded batches.

    Subclasses set ``kind`` (the ``kind`` key in featurepipe.toml), ``stage`` (alpha,
    beta or stable), ``options`` (the pydantic model of their keys) and ``summary``, and
    implement :meth:`read`.

    Args:
        name: the source's name in featurepipe.toml, which is also its table name.
        options: the validated options of the source.
    """

    kind: ClassVar[str]
    stage: ClassVar[Stage]
    options: ClassVar[type[BaseModel]]
    summary: ClassVar[str]

    def __init__(self, name: str, options: OptionsT) -> None:
        self.name = name
        self.config = options

    @abstractmethod
    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield the batches that are new since ``state``; return the next state."""

    def extract(self, state: Mapping[str, Any] | None = None, *, load_id: str = "") -> Extraction:
        """Start a pull from the last committed state (empty: from the beginning).

        Nothing is read until the extraction is iterated.
        """
        return Extraction(self.name, self.kind, load_id, self.read(dict(state or {})))


class CursorTracker:
    """Keeps the largest cursor value and the rows already loaded at it.

    Rows are read with ``cursor >= last``. A row at exactly ``last`` is dropped only if the
    same row (same primary key and same content) was loaded before: rows sharing the last
    value, split across batches or runs, or arriving late with that same value, are neither
    lost nor loaded twice, and a row changed within the same cursor instant (a coarse
    timestamp) is loaded again rather than missed. The state holds, for every row at the
    largest value, its key and a digest of its content.
    """

    def __init__(self, cursor: str, key: Sequence[str], last: Mapping[str, Any] | None) -> None:
        self.cursor = cursor
        self.key = list(key)
        self.value: Any = last["value"] if last else None
        self.rows: set[tuple[tuple[Any, ...], str]] = {
            (tuple(k), digest) for k, digest in (last or {}).get("rows", [])
        }
        self._last = self.value
        self._seen_at_last = set(self.rows)

    def _row_ids(self, frame: pl.DataFrame) -> list[tuple[tuple[Any, ...], str]]:
        keys = frame.select(self.key).iter_rows()
        digests = (hashlib.sha256(repr(row).encode()).hexdigest()[:24] for row in frame.iter_rows())
        return list(zip(keys, digests, strict=True))

    def _at(self, frame: pl.DataFrame, value: Any) -> pl.Series:
        return frame[self.cursor] == pl.Series([value], dtype=frame.schema[self.cursor])

    def admit(self, frame: pl.DataFrame, where: str) -> pl.DataFrame:
        """Drop the rows already loaded at the last cursor value; remember the new maximum."""
        missing = [c for c in [self.cursor, *self.key] if c not in frame.columns]
        if missing:
            raise SourceError(
                f"{where}: column(s) {missing} not in the result; columns are {frame.columns}. "
                "Fix `cursor` / `primary_key` in featurepipe.toml."
            )
        if frame.height == 0:
            return frame
        if self._last is not None:  # an API may ignore the cursor parameter: filter here too
            last = pl.lit(self._last, dtype=frame.schema[self.cursor])
            frame = frame.filter(pl.col(self.cursor) >= last)
            positions = self._at(frame, self._last).arg_true().to_list()
            if positions and self._seen_at_last:
                ids = self._row_ids(frame[positions])
                seen = [
                    p for p, row in zip(positions, ids, strict=True) if row in self._seen_at_last
                ]
                if seen:
                    keep = pl.Series(range(frame.height)).is_in(pl.Series(seen).implode()).not_()
                    frame = frame.filter(keep)
        top = frame[self.cursor].max()
        if top is None:
            return frame
        if self.value is None or top > self.value:
            self.value, self.rows = top, set()
        if top == self.value:
            self.rows.update(self._row_ids(frame.filter(self._at(frame, top))))
        return frame

    def state(self) -> dict[str, Any] | None:
        """The cursor state to commit: column, largest value, rows loaded at that value."""
        if self.value is None:
            return None
        return {
            "column": self.cursor,
            "value": self.value,
            "rows": sorted(([list(key), digest] for key, digest in self.rows), key=repr),
        }


def read_batches(frame: pl.DataFrame, location: str, batch_rows: int) -> Iterator[Batch]:
    """Cut an in-memory frame into batches of at most ``batch_rows`` rows."""
    if frame.height == 0:
        yield Batch(frame, location)
        return
    for offset in range(0, frame.height, batch_rows):
        yield Batch(frame.slice(offset, batch_rows), location)
