"""Read one file source (CSV/TSV, zipped or not, NDJSON, Parquet) into a raw polars frame."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..errors import SourceError

if TYPE_CHECKING:
    from ..config import SourceConfig

__all__ = ["Extract", "extract_file"]


@dataclass(frozen=True)
class Extract:
    """A raw frame and where it came from.

    Text formats are read with every column as text, so that typing (and the
    quarantine of values that do not fit) happens in one place: ``schema``.
    """

    table: str
    frame: pl.DataFrame
    location: str
    extracted_at: datetime

    @property
    def rows(self) -> int:
        """Number of rows extracted."""
        return self.frame.height


def _read_bytes(path: Path) -> bytes | Path:
    if path.suffix != ".zip":
        return path
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise SourceError(
                f"{path}: a zipped source must hold exactly one file, found {len(members)}: "
                f"{members[:5]}; unzip it and point `path` at the file you want."
            )
        return archive.read(members[0])


def extract_file(table: str, source: SourceConfig) -> Extract:
    """Read a file source whole.

    Args:
        table: the table name the source loads into (used in messages).
        source: the source's configuration, with an absolute ``path``.

    Returns:
        The raw frame with lineage.

    Raises:
        SourceError: the file is missing, unreadable or not in the declared format.
    """
    path = Path(source.path)
    if not path.is_file():
        raise SourceError(
            f"source {table!r}: file not found: {path}; check `sources.{table}.path` "
            "in featurepipe.toml."
        )
    try:
        data = _read_bytes(path)
        if source.format in ("csv", "tsv"):
            frame = pl.read_csv(
                io.BytesIO(data) if isinstance(data, bytes) else data,
                separator="\t" if source.format == "tsv" else ",",
                infer_schema=False,
                empty_string_is_null=False,
            )
        elif source.format == "ndjson":
            frame = pl.read_ndjson(io.BytesIO(data) if isinstance(data, bytes) else data)
        else:
            frame = pl.read_parquet(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (pl.exceptions.PolarsError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise SourceError(
            f"source {table!r}: cannot read {path} as {source.format}: {exc}"
        ) from exc
    return Extract(table=table, frame=frame, location=str(path), extracted_at=datetime.now(UTC))
