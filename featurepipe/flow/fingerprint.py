"""What a step's result depends on, reduced to digests: the step's cache key and data reads.

A step's *fingerprint* covers what is known before it runs: the notebook's source
(outputs stripped), its effective parameters, the config sections and project files
it reads, and the versions of featurepipe and its libraries. The *data* it reads is
probed separately, because a notebook reports which table versions it read only
when it runs: the cache keeps those versions with the entry and checks them again.

Data probes are looked up by kind (``source:NAME``, ``table:NAME``, ``model:NAME/ALIAS``
for the version a registered model's alias points at); a connector or a
destination adds its own with ``register_source_probe`` / ``register_probe``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config

__all__ = [
    "LIBRARIES",
    "DataProbe",
    "FileHashes",
    "config_digest",
    "digest",
    "files_digest",
    "library_versions",
    "notebook_digest",
    "probe_data",
    "register_probe",
    "register_source_probe",
    "source_digest",
    "step_fingerprint",
    "table_versions",
]

# Libraries whose version can change a step's result.
LIBRARIES = (
    "polars",
    "pyarrow",
    "pandas",
    "numpy",
    "deltalake",
    "scikit-learn",
    "skops",
    "mlflow",
    "great-expectations",
    "papermill",
    "ipykernel",
)

DataProbe = Callable[[Config, str, "FileHashes"], str | None]
"""Return the current version of one named input as text, or None when it is unknown."""

_PROBES: dict[str, DataProbe] = {}
_SOURCE_PROBES: dict[str, Callable[[Any, FileHashes], str | None]] = {}


def digest(value: Any) -> str:
    """A short, stable sha256 of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def notebook_digest(path: Path) -> str:
    """Digest of a notebook's cells: type, source and tags; outputs and counts left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return digest(
        [
            [c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", [])]
            for c in cells
        ]
    )


def config_digest(config: Config, sections: Iterable[str] | None = None) -> str:
    """Digest of the named top-level sections of the configuration (all but ``flow`` if None)."""
    data = config.model_dump(mode="json", exclude={"project_dir", "flow"})
    keys = list(data) if sections is None else list(sections)
    return digest({k: data.get(k) for k in keys})


def files_digest(project_dir: Path, patterns: Iterable[str]) -> dict[str, str]:
    """Digest of each project file matching the glob patterns, by relative path."""
    found: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(project_dir.glob(pattern)):
            if path.is_file():
                found[str(path.relative_to(project_dir))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()[:16]
    return found


def source_digest(root: Path) -> str:
    """Digest of the Python code below ``root``: each ``*.py`` file's path and bytes."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@cache
def _package_source_digest() -> str:
    # An editable install keeps the version while the code changes: hash the code too.
    return source_digest(Path(__file__).resolve().parent.parent)


@cache
def library_versions() -> dict[str, str]:
    """featurepipe's version and code digest, and the version of each of ``LIBRARIES``."""
    versions = {"featurepipe": f"{__version__}+{_package_source_digest()}"}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def step_fingerprint(
    config: Config,
    *,
    step: str,
    notebook: Path,
    parameters: Mapping[str, Any],
) -> tuple[str, dict[str, Any]]:
    """The cache key of a step and the parts it was made of (kept for ``runs compare``)."""
    settings = config.flow.step(step)
    parts = {
        "step": step,
        "notebook": notebook_digest(notebook),
        "parameters": digest(dict(parameters)),
        "config": config_digest(config, settings.config),
        "files": digest(files_digest(config.project_dir, settings.files)),
        "libraries": digest(library_versions()),
    }
    return digest(parts), parts


class FileHashes:
    """sha256 of files, remembered by (path, size, mtime) so unchanged files are not re-read."""

    def __init__(self, known: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.known: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (known or {}).items()}

    def sha256(self, path: Path) -> str:
        """The file's sha256 (hex)."""
        stat = path.stat()
        key = str(path.resolve())
        seen = self.known.get(key)
        if seen and seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns:
            return str(seen["sha256"])
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.known[key] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": h.hexdigest(),
        }
        return h.hexdigest()


def register_probe(kind: str, probe: DataProbe) -> None:
    """Teach the cache to version inputs named ``KIND:NAME``."""
    _PROBES[kind] = probe


def register_source_probe(kind: str, probe: Callable[[Any, FileHashes], str | None]) -> None:
    """Teach the cache to version a source kind (``kind`` in ``[sources.X]``).

    ``probe(source_config, hashes)`` returns a text that changes whenever the source's
    data changes, or None when it cannot tell (then the step that reads it always runs).
    A SQL connector might return ``max(updated_at)`` and a row count, an HTTP one an ETag.
    """
    _SOURCE_PROBES[kind] = probe


def _probe_file_source(source: Any, hashes: FileHashes) -> str | None:
    """Content hash of the file, or of every file a glob matches; None for URLs."""
    pattern = str(source.path)
    if "://" in pattern:
        return None  # remote objects: no cheap, dependable version here yet
    if any(ch in pattern for ch in "*?["):
        root = Path(pattern)
        while any(ch in root.name for ch in "*?[") or not root.exists():
            if root.parent == root:
                return None
            root = root.parent
        paths = sorted(p for p in root.glob(str(Path(pattern).relative_to(root))) if p.is_file())
    else:
        paths = [Path(pattern)] if Path(pattern).is_file() else []
    if not paths:
        return None
    return "sha256:" + digest([[str(p), hashes.sha256(p)] for p in paths])


def _probe_source(config: Config, name: str, hashes: FileHashes) -> str | None:
    source = config.sources.get(name)
    if source is None:
        return None
    probe = _SOURCE_PROBES.get(getattr(source, "kind", "file"))
    return probe(source, hashes) if probe else None


def _destination(config: Config) -> Any:
    from ..destinations import open_destination

    return open_destination(**config.destination_options())


def _probe_table(config: Config, name: str, hashes: FileHashes) -> str | None:
    version = _destination(config).version(name)
    return None if version is None else str(version)


def _sqlite_alias(path: Path, model: str, alias: str) -> tuple[bool, str | None]:
    """(known, version) of an alias read straight from MLflow's sqlite store."""
    if not path.is_file():
        return True, None
    query = "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(query, (model, alias)).fetchall()
    except sqlite3.Error:  # a schema this does not know
        return False, None
    if len(rows) > 1:  # one row per MLflow workspace: which one is for MLflow to say
        return False, None
    return True, str(rows[0][0]) if rows else None


def _probe_model(config: Config, name: str, hashes: FileHashes) -> str | None:
    """The version ``models:/MODEL@ALIAS`` points at (``name`` is ``MODEL/ALIAS``).

    A sqlite store is read directly (one query, where importing MLflow takes a second);
    any other store, or a sqlite store this cannot read, is asked through MLflow.
    """
    model, _, alias = name.rpartition("/")
    uri = config.tracking_uri
    if uri.startswith("sqlite:///"):
        known, version = _sqlite_alias(Path(uri.removeprefix("sqlite:///")), model, alias)
        if known:
            return version
    from ..tracking import alias_version

    return alias_version(uri, model, alias)


register_source_probe("file", _probe_file_source)
register_probe("source", _probe_source)
register_probe("table", _probe_table)
register_probe("model", _probe_model)


def probe_data(config: Config, names: Iterable[str], hashes: FileHashes) -> dict[str, str | None]:
    """The current version of each input ``KIND:NAME``; None when it is missing or unknown."""
    found: dict[str, str | None] = {}
    for key in names:
        kind, _, name = key.partition(":")
        probe = _PROBES.get(kind)
        found[key] = probe(config, name, hashes) if probe else None
    return found


def table_versions(config: Config) -> dict[str, str]:
    """``table:NAME`` to version of every table in the destination (to see what a step wrote).

    Empty when the destination cannot list its tables (e.g. Delta on object storage): then
    a step's outputs are not checked, only its inputs.
    """
    from ..errors import DestinationError

    try:
        destination = _destination(config)
        return {
            f"table:{table}": str(version)
            for table in destination.tables()
            if (version := destination.version(table)) is not None
        }
    except DestinationError:
        return {}
