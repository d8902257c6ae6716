"""Local CSV (polars, a chunk at a time), gzip, remote and non-UTF-8 CSV and remote Parquet
(pyarrow over fsspec) stream in bounded batches and read exactly as polars reads the whole
file."""

from __future__ import annotations

import gzip
import re

import fsspec
import polars as pl
import pytest

from featurepipe.config import FileSourceConfig
from featurepipe.connectors import FileSource, file_streams
from featurepipe.errors import SourceError

from .test_files import s3_bucket  # noqa: F401 (the moto S3 fixture)

# quoted separators and line breaks, empty fields, null-looking text, spaces, accents
TRICKY = 'id,name,note\n1,"a, b","line\nbreak"\n2,,NA\n3, x ,"say ""hi"""\n4,été,\n' + "".join(
    f"{i},n{i},\n" for i in range(5, 5_000)
)


def _read(path: str, **options) -> list[pl.DataFrame]:
    config = FileSourceConfig(path=path, **options)
    return list(FileSource("t", config).extract())


def _read_whole(path, **options) -> pl.DataFrame:
    """The file read whole by polars, as the connector reads it."""
    return pl.read_csv(path, infer_schema=False, empty_string_is_null=False, **options)


def _never_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    def whole(*_: object) -> bytes:
        raise AssertionError("read whole instead of streamed")

    monkeypatch.setattr(FileSource, "_read_bytes", whole)


def test_gzip_and_latin1_csv_stream_and_read_like_polars(tmp_path, monkeypatch) -> None:
    (tmp_path / "plain.csv").write_text(TRICKY, encoding="utf-8")
    (tmp_path / "packed.csv.gz").write_bytes(gzip.compress(TRICKY.encode()))
    (tmp_path / "latin.csv").write_bytes(TRICKY.encode("latin1"))
    (tmp_path / "bare.tsv.gz").write_bytes(gzip.compress(b"junk\n1\t2\n3\t\n"))
    expected = _read_whole(tmp_path / "plain.csv")
    assert expected.row(0) == ("1", "a, b", "line\nbreak") and expected.row(1) == ("2", "", "NA")
    _never_whole(monkeypatch)
    for name, options in (
        ("plain.csv", {}),
        ("packed.csv.gz", {}),
        ("latin.csv", {"encoding": "latin1"}),
    ):
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


# line breaks inside quotes at every offset, blank and short rows, repeated names, CRLF
AWKWARD = [
    TRICKY,
    'a,a,b\n1,"x\n\n""y""\n",2\n\n3\n' * 40,
    "\ufeffa;b\r\n1;x\r\n\r\n2;z\r\n" * 40,
    "a,b\n1,2",
    "a,b\n",
]


@pytest.mark.parametrize("content", AWKWARD)
@pytest.mark.parametrize(
    ("has_header", "skip_rows"), [(True, 0), (False, 0), (True, 2), (False, 1)]
)
def test_a_local_csv_read_a_chunk_at_a_time_reads_as_the_whole_file(
    tmp_path, monkeypatch, content: str, has_header: bool, skip_rows: int
) -> None:
    path = tmp_path / "f.csv"
    path.write_text(content, encoding="utf-8")
    delimiter = ";" if ";" in content else ","
    monkeypatch.setattr(file_streams, "CHUNK_BYTES", 23)  # chunks cut rows everywhere
    _never_whole(monkeypatch)
    try:
        whole = _read_whole(path, separator=delimiter, has_header=has_header, skip_rows=skip_rows)
    except pl.exceptions.PolarsError as refused:  # refused whole: refused streamed too
        with pytest.raises(SourceError, match=re.escape(str(refused).splitlines()[0])):
            _read(str(path), delimiter=delimiter, has_header=has_header, skip_rows=skip_rows)
        return
    for batch_rows in (1, 7, 10_000):
        frames = _read(str(path), delimiter=delimiter, has_header=has_header,
                       skip_rows=skip_rows, batch_rows=batch_rows)  # fmt: skip
        assert all(f.height == batch_rows for f in frames[:-1]) and frames[-1].height <= batch_rows
        streamed = pl.concat(frames)
        assert streamed.columns == whole.columns and streamed.equals(whole), batch_rows


def test_repeated_header_names_stream_as_polars_names_them(tmp_path, monkeypatch) -> None:
    content = "a,a,b,a\n" + "".join(f"{i},x{i},y,z\n" for i in range(3_000))
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(content.encode()))
    (tmp_path / "rows.csv").write_text(content)
    whole = _read_whole(tmp_path / "rows.csv")
    assert whole.columns == ["a", "a_duplicated_0", "b", "a_duplicated_1"]
    _never_whole(monkeypatch)
    monkeypatch.setattr(file_streams, "BLOCK_BYTES", 1_000)  # many blocks per batch
    frames = _read(str(tmp_path / "rows.csv.gz"), batch_rows=1_000)
    assert [f.height for f in frames] == [1_000] * 3 and pl.concat(frames).equals(whole)
    (tmp_path / "clash.csv.gz").write_bytes(gzip.compress(b"a,a,a_duplicated_0\n1,2,3\n"))
    with pytest.raises(SourceError, match=r"clash\.csv\.gz.*cannot be made unique"):
        _read(str(tmp_path / "clash.csv.gz"))
