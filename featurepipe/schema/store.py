"""The schema store: each table's schema as versioned JSON files under ``warehouse/_schemas``.

Layout: ``_schemas/<table>/<version>.json`` (``000001.json`` …), one file per version,
written atomically (temporary file, then rename). A version is written only when the
schema changed, and only after the load it describes has committed.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from .types import ColumnType

__all__ = ["ColumnSchema", "SchemaStore", "TableSchema"]


@dataclass(frozen=True)
class ColumnSchema:
    """One column: its destination-safe name, the name in the source, and its type."""

    name: str
    original: str
    type: ColumnType

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "original": self.original, "type": self.type.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnSchema:
        """Inverse of :meth:`to_json`."""
        return cls(data["name"], data["original"], ColumnType.from_json(data["type"]))


@dataclass(frozen=True)
class TableSchema:
    """A table's columns at one version.

    Attributes:
        table: table name.
        columns: columns by normalized name, in order.
        version: 1, 2, … one per change.
        load_id: the load that wrote this version.
        changes: what changed from the previous version, one line per change.
    """

    table: str
    columns: dict[str, ColumnSchema]
    version: int = 0
    load_id: str = ""
    changes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def types(self) -> dict[str, str]:
        """Column name to logical type name."""
        return {name: c.type.logical for name, c in self.columns.items()}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "table": self.table,
            "version": self.version,
            "load_id": self.load_id,
            "changes": list(self.changes),
            "columns": [c.to_json() for c in self.columns.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSchema:
        """Inverse of :meth:`to_json`."""
        columns = [ColumnSchema.from_json(c) for c in data["columns"]]
        return cls(
            table=data["table"],
            columns={c.name: c for c in columns},
            version=int(data["version"]),
            load_id=data.get("load_id", ""),
            changes=tuple(data.get("changes", ())),
        )

    def same_columns(self, other: TableSchema | None) -> bool:
        """True if ``other`` has the same columns with the same types."""
        if other is None:
            return False
        mine = [(c.name, c.type.logical, c.type.dtype) for c in self.columns.values()]
        theirs = [(c.name, c.type.logical, c.type.dtype) for c in other.columns.values()]
        return mine == theirs


class SchemaStore:
    """Versioned table schemas in a folder (``warehouse/_schemas`` by default).

    Args:
        path: the folder; created on the first save.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _table_dir(self, table: str) -> Path:
        return self.path / table

    def versions(self, table: str) -> list[int]:
        """The stored versions of a table, oldest first."""
        folder = self._table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())

    def load(self, table: str, version: int | None = None) -> TableSchema | None:
        """A table's schema at ``version`` (the latest by default), ``None`` if none is stored.

        Raises:
            SchemaError: the version does not exist or its file is unreadable.
        """
        versions = self.versions(table)
        if not versions:
            if version is not None:
                raise SchemaError(f"table {table!r}: no stored schema in {self.path}")
            return None
        chosen = versions[-1] if version is None else version
        file = self._table_dir(table) / f"{chosen:06d}.json"
        try:
            return TableSchema.from_json(json.loads(file.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise SchemaError(
                f"table {table!r}: no schema version {chosen} in {self.path}; "
                f"stored versions are {versions}"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaError(
                f"{file}: unreadable schema file ({exc}); restore it or delete the "
                "folder to start the table's schema afresh"
            ) from exc

    def save(self, schema: TableSchema) -> TableSchema:
        """Store ``schema`` as a new version if it differs from the latest one.

        Returns:
            The schema as stored, with its version number.
        """
        latest = self.load(schema.table)
        if latest is not None and schema.same_columns(latest):
            return latest
        version = (latest.version if latest else 0) + 1
        stored = replace(schema, version=version)
        folder = self._table_dir(schema.table)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {**stored.to_json(), "stored_at": datetime.now(UTC).isoformat()}
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2)
        os.replace(tmp, folder / f"{version:06d}.json")
        return stored
