"""Cursor and manifest state of each source, committed only after its destination load commits.

One JSON file per source under ``warehouse/_state/``. A commit writes a temporary file in
the same folder, flushes it to disk and renames it over the old one (``os.replace``), so a
crash leaves either the old state or the new one, never half of each. A crash between
extract and load leaves the old state: the next run extracts the same rows again, it never
skips any. A crash between the load's commit and the state file's is repaired from the copy
of the state the load committed with its rows (see ``featurepipe.ingest``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import StateError

__all__ = ["STATE_DIR", "StateStore", "decode_state", "encode_state"]

STATE_DIR = "_state"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# JSON has no dates, decimals or bytes: tag them so they read back as the same Python type.
_TAGS: dict[str, Any] = {
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$timedelta": lambda v: timedelta(microseconds=int(v)),
    "$decimal": Decimal,
    "$bytes": base64.b64decode,
}


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": str(value // timedelta(microseconds=1))}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {str(k): _tag(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_tag(v) for v in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key in _TAGS:
            return _TAGS[key](value)
    return obj


def encode_state(state: Mapping[str, Any]) -> str:
    """State as JSON text; dates, times, decimals and bytes are tagged to read back exactly."""
    return json.dumps(_tag(state), indent=1, sort_keys=True, allow_nan=False)


def decode_state(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode_state`."""
    value = json.loads(text, object_hook=_untag)
    if not isinstance(value, dict):
        raise ValueError("state must be a JSON object")
    return value


class StateStore:
    """The committed state of every source of one warehouse.

    Args:
        warehouse: the destination folder; state lives in its ``_state`` sub-folder.
    """

    def __init__(self, warehouse: str | Path) -> None:
        self.path = Path(warehouse) / STATE_DIR

    def file(self, source: str) -> Path:
        """The state file of one source."""
        if not _SAFE_NAME.match(source):
            raise StateError(
                f"source {source!r}: not usable as a state file name; use letters, digits, "
                "'_', '-' and '.' in source names."
            )
        return self.path / f"{source}.json"

    def read(self, source: str) -> dict[str, Any]:
        """The last committed state of a source; empty if it never committed.

        Raises:
            StateError: the state file exists but cannot be read.
        """
        file = self.file(source)
        try:
            return decode_state(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(
                f"source {source!r}: cannot read its state {file}: {exc}. Delete the file: "
                "the next run takes the state stored with the table's last load (or, if the "
                "destination has none, extracts the source from the start)."
            ) from exc

    def commit(self, source: str, state: Mapping[str, Any]) -> Path:
        """Replace a source's state atomically. Call it only after the load committed.

        Returns:
            The state file.

        Raises:
            StateError: the state cannot be written; the old state is left as it was.
        """
        file = self.file(source)
        try:
            text = encode_state(state)
            self.path.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{source}.", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, file)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except (OSError, TypeError, ValueError) as exc:
            raise StateError(f"source {source!r}: cannot commit its state {file}: {exc}") from exc
        return file

    def sources(self) -> list[str]:
        """Names of the sources that have committed state."""
        if not self.path.is_dir():
            return []
        return sorted(p.stem for p in self.path.glob("*.json"))
