"""Gzip, remote and non-UTF-8 CSV and remote Parquet stream in bounded batches (pyarrow over
fsspec) and read exactly as polars reads a local file."""

from __future__ import annotations

import gzip

import fsspec
import polars as pl
import pytest

from featurepipe.config import FileSourceConfig
from featurepipe.connectors import FileSource

from .test_files import s3_bucket  # noqa: F401 (the moto S3 fixture)

# quoted separators and line breaks, empty fields, null-looking text, spaces, accents
TRICKY = 'id,name,note\n1,"a, b","line\nbreak"\n2,,NA\n3, x ,"say ""hi"""\n4,été,\n' + "".join(
    f"{i},n{i},\n" for i in range(5, 5_000)
)


def _read(path: str, **options) -> list[pl.DataFrame]:
    config = FileSourceConfig(path=path, **options)
    return list(FileSource("t", config).extract())


def _never_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    def whole(*_: object) -> bytes:
        raise AssertionError("read whole instead of streamed")

    monkeypatch.setattr(FileSource, "_read_bytes", whole)


def test_gzip_and_latin1_csv_stream_and_read_like_polars(tmp_path, monkeypatch) -> None:
    (tmp_path / "plain.csv").write_text(TRICKY, encoding="utf-8")
    (tmp_path / "packed.csv.gz").write_bytes(gzip.compress(TRICKY.encode()))
    (tmp_path / "latin.csv").write_bytes(TRICKY.encode("latin1"))
    (tmp_path / "bare.tsv.gz").write_bytes(gzip.compress(b"junk\n1\t2\n3\t\n"))
    expected = pl.concat(_read(str(tmp_path / "plain.csv"), batch_rows=700))  # polars' reader
    assert expected.row(0) == ("1", "a, b", "line\nbreak") and expected.row(1) == ("2", "", "NA")
    _never_whole(monkeypatch)
    for name, options in (("packed.csv.gz", {}), ("latin.csv", {"encoding": "latin1"})):
        frames = _read(str(tmp_path / name), batch_rows=700, **options)
        assert max(f.height for f in frames) <= 700 and len(frames) >= 8, name
        assert pl.concat(frames).equals(expected), name
    (bare,) = _read(str(tmp_path / "bare.tsv.gz"), format="tsv", has_header=False, skip_rows=1)
    assert bare.columns == ["column_1", "column_2"] and bare.rows() == [("1", "2"), ("3", "")]


def test_remote_csv_and_parquet_stream_in_batches(s3_bucket, monkeypatch) -> None:  # noqa: F811
    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    rows = pl.DataFrame({"id": range(6_000), "name": [f"n{i}" for i in range(6_000)]})
    with fs.open(f"{bucket}/in/rows.parquet", "wb") as out:
        rows.write_parquet(out, row_group_size=2_000)
    fs.pipe(f"{bucket}/in/rows.csv", rows.write_csv().encode())
    fs.pipe(f"{bucket}/in/rows.csv.gz", gzip.compress(rows.write_csv().encode()))
    _never_whole(monkeypatch)
    parquet = _read(
        f"s3://{bucket}/in/rows.parquet",
        format="parquet",
        batch_rows=1_500,
        storage_options=options,
    )
    assert max(f.height for f in parquet) <= 1_500 and pl.concat(parquet).equals(rows)
    text = rows.cast(pl.String)
    for name in ("rows.csv", "rows.csv.gz"):
        frames = _read(f"s3://{bucket}/in/{name}", batch_rows=1_000, storage_options=options)
        assert max(f.height for f in frames) <= 1_000 and pl.concat(frames).equals(text), name
    incremental = FileSourceConfig(
        path=f"s3://{bucket}/in/*.csv*",
        incremental=True,
        write_disposition="append",
        storage_options=options,
    )
    first = FileSource("t", incremental).extract()
    assert first.collect().height == 12_000
    assert FileSource("t", incremental).extract(first.state).collect().height == 0
