"""The file connector: CSV/TSV (.gz, .zip), JSON, NDJSON, Parquet and Excel from paths, globs
and fsspec URLs, incremental by a manifest of the files already read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import fsspec
import polars as pl
import pyarrow as pa
from fsspec.core import url_to_fs

from ..config import FileSourceConfig
from ..errors import SourceError
from ..schema.text import text_dtype
from .base import Batch, BatchReader, SourceBase, read_batches
from .csv_compact import CompactUnavailable, CsvLayout, read_compact
from .file_streams import (
    csv_encoding_streams,
    read_csv_chunks,
    stream_csv,
    stream_ndjson,
    stream_parquet,
)

__all__ = ["Extract", "FileManifest", "FileSource", "ListedFile", "extract_file", "url_filesystem"]

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")
# s3fs is the optional extra [s3]; fsspec's own message names the package of other schemes.
_INSTALL_HINT = "install it, for s3:// with: pip install 'featurepipe[s3]'"
# polars reads a local CSV/TSV a chunk at a time and local NDJSON and Parquet in batches;
# pyarrow streams other CSV/TSV (gzip and zip too) and remote Parquet, NDJSON streams by
# lines (file_streams.py); JSON, Excel and compressed Parquet are read whole.
_STREAMABLE = frozenset({"csv", "tsv", "ndjson", "parquet"})
ZIP_READ_WHOLE_BYTES = 128 << 20
"""A zipped CSV/TSV smaller than this, decompressed, is read whole (faster); larger, streamed."""


class FileSource(SourceBase[FileSourceConfig]):
    """Files matched by a path, glob or URL; with ``incremental``, only new or changed ones."""

    kind = "file"
    stage = "beta"
    options = FileSourceConfig
    summary = "CSV/TSV (.gz, .zip), JSON, NDJSON, Parquet, Excel; local paths, globs, s3:// …"

    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield the batches of every file (new or changed ones when incremental)."""
        cfg = self.config
        manifest = FileManifest(state.get("manifest") if cfg.incremental else None)
        text: dict[str, pl.DataType] = {}  # compact: a column keeps its dictionary across files
        for file in self._list_files():
            if manifest.unchanged(file):
                continue
            if self._can_stream(file):
                sha256 = _file_sha256(file.url) if cfg.incremental else ""
                if manifest.record(file, sha256):
                    yield from self._stream_local(file.url, text)
                continue
            if self._streams_through_fsspec(file):
                if manifest.record(file, self._digest(file) if cfg.incremental else ""):
                    yield from self._stream_fsspec(file)
                continue
            data = self._read_bytes(file)
            if manifest.record(file, hashlib.sha256(data).hexdigest()):
                yield from read_batches(self._parse(file.url, data, text), file.url, cfg.batch_rows)
        return {"manifest": manifest.entries} if cfg.incremental else {}

    # ---- listing --------------------------------------------------------------------

    def _list_files(self) -> list[ListedFile]:
        cfg = self.config
        try:
            # a fresh instance each pull: fsspec caches instances and their listings
            fs, root = url_filesystem(
                cfg.path, f"source {self.name!r}", skip_instance_cache=True, **cfg.storage_options
            )
            if _GLOB_CHARS & set(root):
                paths = sorted(fs.glob(root))
            elif fs.isfile(root):
                paths = [root]
            else:
                paths = []
            files = [ListedFile.from_info(fs, fs.info(p)) for p in paths]
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"source {self.name!r}: cannot list {cfg.path}: {exc}; check "
                f"`sources.{self.name}.path` and `storage_options`."
            ) from exc
        files = [f for f in files if f.kind == "file"]
        if not files and cfg.incremental:
            self._check_folder(fs, root)
        if not files and not cfg.incremental:
            what = "no file matches" if _GLOB_CHARS & set(cfg.path) else "file not found:"
            raise SourceError(
                f"source {self.name!r}: {what} {cfg.path}; check `sources.{self.name}.path` "
                "in featurepipe.toml."
            )
        return files

    def _check_folder(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        """An incremental source may match nothing yet, but its folder (a bucket for object
        stores, where folders exist only while they hold files) must exist."""
        static = root[: min((root.index(c) for c in _GLOB_CHARS if c in root), default=len(root))]
        folder = static if static.endswith("/") else static.rpartition("/")[0]
        local = "file" in fs.protocol or "local" in fs.protocol
        where = (folder.rstrip("/") or "/") if local else folder.split("/", 1)[0]
        try:
            found = fs.isdir(where) if local else fs.exists(where)
        except OSError:
            found = False
        if not found:
            what = "folder" if local else "bucket"
            raise SourceError(
                f"source {self.name!r}: the {what} {where} of {self.config.path} does not "
                f"exist; check `sources.{self.name}.path` (and `storage_options`), or create "
                "it: an incremental source finds nothing there, which would load nothing."
            )

    # ---- reading --------------------------------------------------------------------

    def _compression(self, url: str) -> str:
        if self.config.compression != "infer":
            return self.config.compression
        suffix = PurePosixPath(url).suffix.lower()
        return {".gz": "gzip", ".gzip": "gzip", ".zip": "zip"}.get(suffix, "none")

    def _can_stream(self, file: ListedFile) -> bool:
        cfg = self.config
        return (
            file.local
            and cfg.format in _STREAMABLE
            and self._compression(file.url) == "none"
            and cfg.encoding == "utf8"
        )

    def _streams_through_fsspec(self, file: ListedFile) -> bool:
        """CSV/TSV plain, gzip or zipped (remote, or in another encoding), NDJSON however
        stored, and remote Parquet."""
        cfg, compression = self.config, self._compression(file.url)
        if cfg.format in ("csv", "tsv"):
            if compression == "zip" and self._zip_size(file) < ZIP_READ_WHOLE_BYTES:
                return False  # small: read whole, about three times faster than streamed
            return compression in ("none", "gzip", "zip") and csv_encoding_streams(cfg.encoding)
        return cfg.format == "ndjson" or (cfg.format == "parquet" and compression == "none")

    def _zip_size(self, file: ListedFile) -> int:
        """The decompressed size of a zip's member (from the zip's directory), 0 when the
        file is not a readable zip (the read then says why)."""
        try:
            with file.fs.open(file.path, "rb") as handle, zipfile.ZipFile(handle) as archive:
                return sum(i.file_size for i in archive.infolist())
        except (zipfile.BadZipFile, OSError):
            return 0

    def _digest(self, file: ListedFile) -> str:
        """The file's digest for the manifest, read in chunks: of its stored bytes, but of
        the decompressed content for a zip or NDJSON (as when those were read whole), so
        manifests written then still match."""
        decompressed = self._compression(file.url) == "zip" or self.config.format == "ndjson"
        digest = hashlib.sha256()
        try:
            with self._opener(file)() if decompressed else file.fs.open(file.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise self._truncated(file.url, exc) from exc
        except zipfile.BadZipFile as exc:
            raise self._not_zip(file.url, exc) from exc
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: cannot read {file.url}: {exc}") from exc
        return digest.hexdigest()

    def _opener(self, file: ListedFile) -> Callable[[], AbstractContextManager[IO[bytes]]]:
        """Opens the file's content, decompressed, from its start."""
        compression = self._compression(file.url)
        if compression == "zip":
            return lambda: self._zip_member(file)
        gz = "gzip" if compression == "gzip" else None
        return lambda: file.fs.open(file.path, "rb", compression=gz)

    @contextmanager
    def _zip_member(self, file: ListedFile) -> Iterator[IO[bytes]]:
        """The one file inside a zip, decompressed as it is read."""
        with file.fs.open(file.path, "rb") as handle, zipfile.ZipFile(handle) as archive:
            with archive.open(self._zip_member_name(file.url, archive)) as member:
                yield member

    def _stream_fsspec(self, file: ListedFile) -> Iterator[Batch]:
        cfg = self.config
        opener = self._opener(file)
        try:
            if cfg.format in ("parquet", "ndjson"):
                stream = stream_parquet if cfg.format == "parquet" else stream_ndjson
                with opener() as handle:
                    for frame in stream(handle, cfg.batch_rows):
                        yield Batch(frame, file.url)
                return
            for frame in self._stream_csv(opener):
                yield Batch(frame, file.url)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise self._truncated(file.url, exc) from exc
        except zipfile.BadZipFile as exc:
            raise self._not_zip(file.url, exc) from exc
        except (pa.ArrowException, pl.exceptions.PolarsError, OSError, ValueError) as exc:
            raise self._unreadable(file.url, exc) from exc

    def _stream_csv(
        self, opener: Callable[[], AbstractContextManager[IO[bytes]]]
    ) -> Iterator[pl.DataFrame]:
        cfg = self.config
        return stream_csv(
            opener,
            separator=self._csv_options()["separator"],
            has_header=cfg.has_header,
            skip_rows=cfg.skip_rows,
            encoding=cfg.encoding,
            batch_rows=cfg.batch_rows,
        )

    def _not_zip(self, url: str, exc: BaseException) -> SourceError:
        return SourceError(f"source {self.name!r}: {url} is not a zip file: {exc}")

    def _truncated(self, url: str, exc: BaseException) -> SourceError:
        return SourceError(
            f"source {self.name!r}: {url} is not a complete gzip file ({exc}); "
            "the file is truncated or corrupt: copy it again from its origin."
        )

    def _read_bytes(self, file: ListedFile) -> bytes:
        try:
            with file.fs.open(file.path, "rb") as handle:
                data: bytes = handle.read()
            compression = self._compression(file.url)
            if compression == "gzip":
                return gzip.decompress(data)
            if compression == "zip":
                return self._unzip(file.url, data)
            return data
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise self._truncated(file.url, exc) from exc
        except zipfile.BadZipFile as exc:
            raise self._not_zip(file.url, exc) from exc
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: cannot read {file.url}: {exc}") from exc

    def _unzip(self, url: str, data: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(self._zip_member_name(url, archive))

    def _zip_member_name(self, url: str, archive: zipfile.ZipFile) -> str:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise SourceError(
                f"source {self.name!r}: {url}: a zipped source must hold exactly one file, "
                f"found {len(members)}: {members[:5]}; unzip it and point `path` at the "
                "file you want."
            )
        return members[0]

    def _csv_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "separator": cfg.delimiter or ("\t" if cfg.format == "tsv" else ","),
            "has_header": cfg.has_header,
            "skip_rows": cfg.skip_rows,
            "infer_schema": False,  # every column as text: typing happens in `schema`
            "empty_string_is_null": False,
        }

    def _csv_layout(self) -> CsvLayout:
        options = self._csv_options()
        return CsvLayout(options["separator"], options["has_header"], options["skip_rows"])

    @staticmethod
    def _as_text(names: list[str], text: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
        """Compact: every column as dictionary-encoded text (``featurepipe.schema.text``);
        ``text`` keeps one dictionary per column across the files."""
        return {name: text.setdefault(name, text_dtype()) for name in names}

    def _read_compact(self, path: str, text: dict[str, pl.DataType]) -> pl.DataFrame | None:
        """The file read compactly (``featurepipe.connectors.csv_compact``), or ``None``
        when it has to be read as text."""
        cfg = self.config
        try:
            return read_compact(path, self._csv_layout(), cfg.null_values, text, cfg.columns)
        except CompactUnavailable as why:
            log.info("source %r: %s is read as text (%s)", self.name, path, why)
            return None

    def _stream_local(self, url: str, text: dict[str, pl.DataType]) -> Iterator[Batch]:
        cfg = self.config
        path = url.removeprefix("file://")
        try:
            if cfg.compact and cfg.format in ("csv", "tsv"):
                frame = self._read_compact(path, text)
                if frame is not None:
                    yield from read_batches(frame, url, cfg.batch_rows)
                    return
            if cfg.format in ("csv", "tsv"):
                # not scan_csv(...).collect_batches(): it parses ahead of a slower consumer
                with open(path, "rb") as handle:
                    for frame in read_csv_chunks(handle, self._csv_options(), cfg.batch_rows):
                        if cfg.compact:
                            frame = frame.cast(pl.Schema(self._as_text(frame.columns, text)))
                        yield Batch(frame, url)
                return
            if cfg.format == "ndjson":
                lazy = pl.scan_ndjson(path)
            else:
                lazy = pl.scan_parquet(path, glob=False)
            empty = True
            for frame in lazy.collect_batches(chunk_size=cfg.batch_rows):
                empty = False
                yield Batch(frame, url)
            if empty:
                yield Batch(lazy.limit(0).collect(), url)
        except (pa.ArrowException, pl.exceptions.PolarsError, OSError, ValueError) as exc:
            raise self._unreadable(url, exc) from exc

    def _parse(self, url: str, data: bytes, text: dict[str, pl.DataType]) -> pl.DataFrame:
        cfg = self.config
        try:
            if cfg.format in ("csv", "tsv"):
                encoding = cfg.encoding
                if encoding in ("latin1", "cp1252"):
                    data, encoding = data.decode(encoding).encode(), "utf8"
                options = {"encoding": encoding, **self._csv_options()}
                if cfg.compact:
                    names = pl.read_csv(io.BytesIO(data), n_rows=0, **options).columns
                    options["schema_overrides"] = self._as_text(names, text)
                return pl.read_csv(io.BytesIO(data), **options)
            if cfg.format == "ndjson":
                return pl.read_ndjson(io.BytesIO(data))
            if cfg.format == "json":
                return pl.read_json(io.BytesIO(data))
            if cfg.format == "parquet":
                return pl.read_parquet(io.BytesIO(data))
            return self._read_excel(url, data)
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise self._unreadable(url, exc) from exc

    def _read_excel(self, url: str, data: bytes) -> pl.DataFrame:
        if not data.startswith(b"PK"):  # .xlsx is a zip; calamine's message says less
            raise self._unreadable(url, ValueError("not an .xlsx workbook (no zip signature)"))
        try:
            # every column as text, like CSV: typing happens in `schema`
            frame = pl.read_excel(
                io.BytesIO(data),
                sheet_name=self.config.sheet,
                has_header=self.config.has_header,
                infer_schema_length=0,
                raise_if_empty=False,
            )
        except Exception as exc:  # fastexcel raises its own classes, not exported
            raise self._unreadable(url, exc) from exc
        assert isinstance(frame, pl.DataFrame)  # noqa: S101 (one sheet asked, one returned)
        return frame

    def _unreadable(self, url: str, exc: BaseException) -> SourceError:
        return SourceError(
            f"source {self.name!r}: cannot read {url} as {self.config.format}: {exc}; check "
            f"`sources.{self.name}.format` and the file's options (delimiter, encoding, sheet)."
        )


@dataclass(frozen=True)
class ListedFile:
    """One file of a listing: its URL, size and mtime (what a manifest compares) and the
    filesystem and path to open it with."""

    url: str
    size: int | None
    mtime: str | None
    kind: str
    local: bool
    fs: fsspec.AbstractFileSystem
    path: str

    @classmethod
    def from_info(cls, fs: fsspec.AbstractFileSystem, info: Mapping[str, Any]) -> ListedFile:
        local = "file" in fs.protocol or "local" in fs.protocol
        name = str(info["name"])
        url = name if local else fs.unstrip_protocol(name)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        if isinstance(mtime, int | float):
            mtime = datetime.fromtimestamp(mtime, UTC)
        return cls(
            url=url,
            size=info.get("size"),
            mtime=mtime.isoformat() if isinstance(mtime, datetime) else _str_or_none(mtime),
            kind=str(info.get("type", "file")),
            local=local,
            fs=fs,
            path=name,
        )


class FileManifest:
    """The files an incremental source has read, by URL: size, mtime and content hash.

    A file listed with the size and mtime it was read at is not read again (nor hashed);
    any other file is read unless its content hash is the one already read (touched, not
    changed). Only the files listed now are kept, so the manifest is as large as the
    listing, and a file is read once whatever its name or mtime, however late it appears.

    Args:
        entries: the ``manifest`` of the committed state (empty or ``None``: nothing read).
    """

    def __init__(self, entries: Mapping[str, Any] | None = None) -> None:
        self.previous: dict[str, Any] = dict(entries or {})
        self.entries: dict[str, Any] = {}

    def unchanged(self, file: ListedFile) -> bool:
        """Whether ``file`` has the size and mtime it was read at (it is then kept as read)."""
        old = self.previous.get(file.url)
        if old and (old.get("size"), old.get("mtime")) == (file.size, file.mtime):
            self.entries[file.url] = old
            return True
        return False

    def record(self, file: ListedFile, sha256: str) -> bool:
        """Note ``file`` with its content hash; returns whether it is new or changed."""
        self.entries[file.url] = {"size": file.size, "mtime": file.mtime, "sha256": sha256}
        old = self.previous.get(file.url)
        return not (old and old.get("sha256") == sha256)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---- whole-file reading, kept for callers that want one frame ---------------------------


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


def extract_file(table: str, source: FileSourceConfig) -> Extract:
    """Read a file source whole, ignoring any manifest.

    Args:
        table: the table name the source loads into (used in messages).
        source: the source's configuration, with an absolute ``path``.

    Returns:
        The raw frame with lineage.

    Raises:
        SourceError: the file is missing, unreadable or not in the declared format.
    """
    extraction = FileSource(table, source.model_copy(update={"incremental": False})).extract()
    frame = extraction.collect()
    return Extract(
        table=table,
        frame=frame,
        location=", ".join(extraction.lineage.locations) or str(Path(source.path)),
        extracted_at=extraction.extracted_at,
    )


def url_filesystem(url: str, what: str, **options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a path or URL, and the path inside it.

    Args:
        url: a local path or an fsspec URL such as ``s3://bucket/key``.
        what: what the URL belongs to, for the message (``source 'orders'``).
        **options: fsspec options (``storage_options``).

    Returns:
        (filesystem, path in it).

    Raises:
        SourceError: the URL's scheme needs a package that is not installed; names the pip line.
    """
    try:
        fs, root = url_to_fs(url, **options)
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise SourceError(
            f"{what}: {url} needs a package that is missing ({exc}); {_INSTALL_HINT}"
        ) from exc
    return fs, str(root)
