"""One ingest run: pull each source from its committed state, load it, then commit its state.

Exactly once across crashes: each load carries its source's next state into the same
destination transaction as its rows (a Delta commit's metadata, a row of ``_fp_loads`` on
PostgreSQL and SQLite). The state file under ``_state`` is written right after. If a crash
falls between the two, the next run finds the destination a load ahead of the state file
and resumes from the state that load committed, so rows already loaded are not extracted
again, whatever new data arrived meanwhile. A crash before the load commits leaves both as
they were: the rows are extracted again, never skipped.

:meth:`Ingest.extract` reads each source whole into memory; :meth:`Ingest.stage` streams
it instead, batch by batch through typing, cleaning and the per-row expectations, onto
disk (:mod:`featurepipe.staging`), so a table larger than memory loads in the same one
transaction once every table passed the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from .connectors import Extraction, extract_source
from .destinations import Destination, LoadResult, open_destination
from .destinations.base import Rows
from .destinations.staged import StagedRows
from .errors import StateError
from .schema import SchemaStore
from .staging import StagedTable, stage_table
from .state import StateStore, decode_state, encode_state
from .validate import require_valid

if TYPE_CHECKING:
    from pathlib import Path

    from .config import Config

__all__ = ["COMMITTED_LOAD", "Ingest", "SourcePull", "resume_state"]

log = logging.getLogger(__name__)

COMMITTED_LOAD = "committed_load_id"
"""State key: the load whose rows this state follows (absent before a source's first load)."""


def resume_state(store: StateStore, destination: Destination, source: str) -> dict[str, Any]:
    """The state a source's next pull starts from.

    That is the state file, unless the destination holds a later load of the source's
    table: then a crash fell between that load's commit and the state file's, and the state
    the load committed with its rows is taken (and written to the state file).

    Raises:
        StateError: the state file, or the state stored with the load, cannot be read.
        DestinationError: the destination cannot be read.
    """
    local = store.read(source)
    remote = destination.committed_state(source)
    if remote is None or remote.load_id == local.get(COMMITTED_LOAD):
        return local
    try:
        state = decode_state(remote.state)
    except ValueError as exc:
        raise StateError(
            f"source {source!r}: the state stored with load {remote.load_id} in "
            f"{destination.location(source)} is unreadable: {exc}"
        ) from exc
    log.warning(
        "source %r: load %s committed but its state file did not (a crash between the two); "
        "resuming from the state stored with that load",
        source,
        remote.load_id,
    )
    store.commit(source, state)
    return state


@dataclass
class SourcePull:
    """One source's part of an ingest run.

    Attributes:
        name: the source (and table) name.
        previous: the committed state the pull started from.
        extraction: the pull; ``None`` when this run's load id already loaded the source
            (a rerun of the same run), so there is nothing to pull again.
        frame: the rows extracted, once :meth:`Ingest.extract` ran.
        staged: the rows typed, checked and staged, once :meth:`Ingest.stage` ran.
        load: the load, once :meth:`Ingest.load` ran.
    """

    name: str
    previous: dict[str, Any]
    extraction: Extraction | None
    frame: pl.DataFrame = field(default_factory=pl.DataFrame)
    staged: StagedTable | None = None
    load: LoadResult | None = None

    def lineage(self) -> dict[str, Any]:
        """Source, kind, load id, extraction time, locations and rows, as plain values."""
        if self.extraction is None:
            return {"source": self.name, "load_id": self.previous.get(COMMITTED_LOAD)}
        lineage = self.extraction.lineage.as_dict()
        if self.load is not None:
            lineage["version"] = self.load.version
        return lineage


class Ingest:
    """Pull a project's sources and load them, each source's state following its load.

    Args:
        config: the project configuration.
        load_id: the id every load of this run carries (the flow's run id).
        sources: the sources to pull; all of the project's by default.
        destination: where tables load; the project's destination by default.
    """

    def __init__(
        self,
        config: Config,
        load_id: str,
        *,
        sources: Iterable[str] | None = None,
        destination: Destination | None = None,
    ) -> None:
        self.config = config
        self.load_id = load_id
        self.names = list(config.sources if sources is None else sources)
        self.destination = destination or open_destination(**config.destination_options())
        self.store = StateStore(config.state_dir)
        self.pulls: dict[str, SourcePull] = {}

    def extract(self) -> dict[str, pl.DataFrame]:
        """Pull every source from its committed state, each whole into memory.

        Returns:
            The raw frames to type, check and load, by source. An incremental source with
            nothing new, or one this run's load id already loaded, is left out.

        Raises:
            SourceError: a source cannot be read; nothing is committed.
        """
        for pull in self._start():
            if pull.extraction is not None:
                pull.frame = pull.extraction.collect()
        return {name: pull.frame for name, pull in self.pulls.items() if self._to_load(pull)}

    def stage(
        self,
        expectations_dir: str | Path,
        *,
        schemas: SchemaStore | None = None,
        keep: Mapping[str, Callable[[pl.DataFrame], pl.DataFrame]] | None = None,
        folder: str | Path | None = None,
        stream: bool = True,
    ) -> dict[str, StagedTable]:
        """Pull every source batch by batch (``batch_rows`` of its config), typing,
        cleaning and checking each batch and staging it on disk; memory holds one batch.

        Load the staged tables only once :meth:`gate` passed.

        Args:
            expectations_dir: folder holding each table's suite.
            schemas: the stored schemas (``<state_dir>/_schemas`` by default).
            keep: per source, a filter applied to each raw batch before typing.
            folder: where to stage (the system's temporary folder by default).
            stream: ``False`` reads each source whole into memory and types and checks
                it in one piece (any expectation allowed), as :meth:`extract` does.

        Returns:
            The staged tables by source; as :meth:`extract`, an incremental source with
            nothing new, or one this run's load id already loaded, is left out.

        Raises:
            SourceError: a source cannot be read; nothing is committed.
            SchemaError: a batch breaks a ``freeze`` contract.
            ConfigError: a suite is missing, or needs the whole table at once.
        """
        schemas = schemas or SchemaStore(self.config.state_dir / "_schemas")
        for pull in self._start():
            if pull.extraction is None:
                continue
            source = self.config.sources[pull.name]
            batches: Iterable[pl.DataFrame] = pull.extraction
            if not stream:
                pull.frame = pull.extraction.collect()
                if not self._to_load(pull):
                    continue  # nothing new: nothing to check
                batches = [pull.frame]
            pull.staged = stage_table(
                pull.name,
                batches,
                expectations_dir,
                typing=source.typing_options(),
                stored=schemas.load(pull.name),
                primary_key=source.primary_key,
                load_id=self.load_id,
                keep=(keep or {}).get(pull.name),
                folder=folder,
                whole=not stream,
            )
            pull.frame = pl.DataFrame()  # staged on disk: not kept in memory as well
        return {n: p.staged for n, p in self.pulls.items() if p.staged and self._to_load(p)}

    def gate(self) -> None:
        """Shut the gate if any staged table failed its suite: the staged rows are removed
        and nothing is loaded.

        Raises:
            ValidationFailed: with every failed expectation of every table.
        """
        staged = [p.staged for p in self.pulls.values() if p.staged is not None]
        loaded = [p.staged.report for p in self.pulls.values() if p.staged and self._to_load(p)]
        try:
            require_valid(loaded)  # a source with nothing new loads nothing: no gate
        except BaseException:
            for table in staged:
                table.close()
            raise

    def quarantine(self) -> StagedRows:
        """The quarantined values of every staged table, to load as one table."""
        parts = [p.staged.quarantine for p in self.pulls.values() if p.staged is not None]
        return StagedRows.combine("_quarantine", parts)

    def _start(self) -> list[SourcePull]:
        """Start every source's pull from its resumed state (nothing read yet)."""
        for name in self.names:
            previous = resume_state(self.store, self.destination, name)
            done = previous.get(COMMITTED_LOAD) == self.load_id
            extraction = None
            if not done:
                source = self.config.sources[name]
                extraction = extract_source(name, source, previous, load_id=self.load_id)
            self.pulls[name] = SourcePull(name, previous, extraction)
        return list(self.pulls.values())

    def _to_load(self, pull: SourcePull) -> bool:
        if pull.extraction is None:
            return False
        replaced = self.config.sources[pull.name].write_disposition == "replace"
        rows = pull.frame.height if pull.staged is None else pull.staged.rows.height
        return bool(rows or replaced)

    def load(
        self,
        name: str,
        frame: Rows,
        *,
        schema_version: str = "",
        after_load: Callable[[], object] | None = None,
    ) -> LoadResult:
        """Load one source's checked rows, then commit its state.

        The state goes into the load's own transaction, then to the state file; a crash
        in between is repaired by the next run (see :func:`resume_state`).

        Args:
            name: the source.
            frame: its typed, cleaned and validated rows, in memory or staged.
            schema_version: the schema version they follow, recorded in the loads table.
            after_load: called once the load committed and before the state file is
                written, e.g. to store the schema the load followed.

        Returns:
            The load.

        Raises:
            DestinationError: the load failed; neither the table nor the state changed.
        """
        pull, extraction = self._pull(name)
        state = {**extraction.state, COMMITTED_LOAD: self.load_id}
        pull.load = self.destination.write(
            name,
            frame,
            load_id=self.load_id,
            schema_version=schema_version,
            extracted_at=extraction.extracted_at,
            source_state=encode_state(state),
            **self.config.load_options(name),
        )
        if after_load is not None:
            after_load()
        self.store.commit(name, state)
        return pull.load

    def finish(self) -> list[str]:
        """Commit the state of the sources that had nothing to load.

        Their state may still move (a manifest learns of an empty file); it follows the
        last load. Call this after every :meth:`load`; it also removes staged rows.

        Returns:
            The sources whose state was committed here.
        """
        committed = []
        for pull in self.pulls.values():
            if pull.extraction is None or pull.load is not None or self._to_load(pull):
                continue
            previous = pull.previous.get(COMMITTED_LOAD)
            state = {**pull.extraction.state}
            if previous is not None:
                state[COMMITTED_LOAD] = previous
            self.store.commit(pull.name, state)
            committed.append(pull.name)
        for pull in self.pulls.values():  # loaded: the staged files are not needed
            if pull.staged is not None:
                pull.staged.close()
        return committed

    def lineage(self) -> list[dict[str, Any]]:
        """The lineage of every source's pull: for the step summary and MLflow."""
        return [pull.lineage() for pull in self.pulls.values()]

    def _pull(self, name: str) -> tuple[SourcePull, Extraction]:
        pull = self.pulls.get(name)
        if pull is None or pull.extraction is None or not self._to_load(pull):
            raise StateError(
                f"source {name!r}: nothing was extracted for it in this run; "
                "call Ingest.extract() first, and load only the frames it returned."
            )
        return pull, pull.extraction
