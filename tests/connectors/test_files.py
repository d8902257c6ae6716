"""The file connector: formats, zipped CSV, and errors that name the source."""

from __future__ import annotations

import gzip
import importlib.util
import os
import secrets
import zipfile
from collections.abc import Iterator

import fsspec
import polars as pl
import pytest

from featurepipe.config import FileSourceConfig
from featurepipe.connectors import FileSource, extract_file
from featurepipe.errors import SourceError


def test_reads_every_column_as_text_from_csv_tsv_and_zip(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id,when\n007,2013-01-01T10:00:00Z\n,NA\n")
    (tmp_path / "a.tsv").write_text("id\twhen\n007\tx\n")
    with zipfile.ZipFile(tmp_path / "a.csv.zip", "w") as z:
        z.write(tmp_path / "a.csv", "a.csv")
    csv = extract_file("a", FileSourceConfig(path=str(tmp_path / "a.csv")))
    assert csv.frame.schema == pl.Schema({"id": pl.String, "when": pl.String})
    assert csv.frame.rows() == [("007", "2013-01-01T10:00:00Z"), ("", "NA")]  # raw, untouched
    tsv = extract_file("a", FileSourceConfig(path=str(tmp_path / "a.tsv"), format="tsv"))
    assert tsv.frame.rows() == [("007", "x")]
    zipped = extract_file("a", FileSourceConfig(path=str(tmp_path / "a.csv.zip")))
    assert zipped.frame.equals(csv.frame) and zipped.rows == 2


def test_real_flights_zip_is_read_whole(config) -> None:
    flights = extract_file("flights", config.sources["flights"])
    assert flights.rows == 336_776
    assert flights.frame.columns[:3] == ["year", "month", "day"]


def test_errors_name_the_table_and_the_file(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"source 'orders': file not found: .*nope\.csv"):
        extract_file("orders", FileSourceConfig(path=str(tmp_path / "nope.csv")))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n2\n")
    with pytest.raises(SourceError, match="exactly one file, found 2"):
        extract_file("orders", FileSourceConfig(path=str(tmp_path / "two.zip")))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(
        SourceError, match=r"source 'orders': cannot read .*bad\.parquet as parquet"
    ):
        extract_file(
            "orders", FileSourceConfig(path=str(tmp_path / "bad.parquet"), format="parquet")
        )


def test_a_url_whose_filesystem_package_is_missing_names_the_install(tmp_path) -> None:
    # gs:// needs gcsfs, which featurepipe does not install: the real missing-package path
    # (s3:// takes the same one without the [s3] extra, but the dev install has s3fs).
    assert importlib.util.find_spec("gcsfs") is None, "pick a scheme whose package is absent"
    with pytest.raises(
        SourceError, match=r"source 'drops': gs://bucket/a\.csv needs a package .*gcsfs.*\[s3\]"
    ):
        FileSource("drops", _source("gs://bucket/a.csv")).extract().collect()


def _source(path, **options) -> FileSourceConfig:
    return FileSourceConfig(path=str(path), **options)


def test_formats_compression_and_options(tmp_path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"id;name\n1;\xe9t\xe9\n"))
    latin = FileSource("a", _source(tmp_path / "a.csv.gz", delimiter=";", encoding="latin1"))
    assert latin.extract().collect().rows() == [("1", "été")]
    (tmp_path / "a.json").write_text('[{"id": 1, "tags": ["x"], "geo": {"lat": 1.5}}]')
    frame = FileSource("a", _source(tmp_path / "a.json", format="json")).extract().collect()
    assert frame["geo"].dtype == pl.Struct({"lat": pl.Float64}) and frame["tags"].to_list() == [
        ["x"]
    ]
    (tmp_path / "a.ndjson").write_text('{"id": 1}\n{"id": 2}\n')
    assert FileSource("a", _source(tmp_path / "a.ndjson", format="ndjson")).extract().collect()[
        "id"
    ].to_list() == [1, 2]
    pl.DataFrame({"id": [1, 2], "name": ["x", None]}).write_excel(tmp_path / "a.xlsx", "Orders")
    xlsx = FileSource("a", _source(tmp_path / "a.xlsx", format="xlsx", sheet="Orders"))
    assert xlsx.extract().collect().rows() == [("1", "x"), ("2", None)]  # text, like CSV
    (tmp_path / "h.csv").write_text("junk line\n1,2\n3,4\n")
    headless = FileSource("h", _source(tmp_path / "h.csv", has_header=False, skip_rows=1))
    assert headless.extract().collect().rows() == [("1", "2"), ("3", "4")]


def test_large_file_comes_in_bounded_batches(tmp_path) -> None:
    pl.DataFrame({"id": range(10_000)}).write_csv(tmp_path / "big.csv")
    pl.DataFrame({"id": range(2_500)}).write_csv(tmp_path / "big.csv.gz", compression="gzip")
    for name in ("big.csv", "big.csv.gz"):
        extraction = FileSource("big", _source(tmp_path / name, batch_rows=1_000)).extract()
        sizes = [frame.height for frame in extraction]
        assert max(sizes) <= 1_000 and sum(sizes) in (10_000, 2_500), name


def test_parquet_is_read_in_batches_of_at_most_batch_rows(tmp_path) -> None:
    rows = pl.DataFrame({"id": range(10_000), "name": [f"n{i}" for i in range(10_000)]})
    rows.write_parquet(tmp_path / "big.parquet", row_group_size=4_096)
    source = _source(tmp_path / "big.parquet", format="parquet", batch_rows=1_500)
    frames = list(FileSource("big", source).extract())
    assert len(frames) >= 7 and max(f.height for f in frames) <= 1_500
    assert pl.concat(frames).equals(rows)  # every row once, in order, types kept


def test_incremental_source_in_a_missing_folder_is_an_error(tmp_path, s3_bucket) -> None:
    (tmp_path / "empty").mkdir()
    config = _source(tmp_path / "empty" / "*.csv", incremental=True, write_disposition="append")
    assert FileSource("drops", config).extract().collect().height == 0  # nothing there yet
    for path in (tmp_path / "nope" / "*.csv", tmp_path / "nope" / "a.csv"):
        config = _source(path, incremental=True, write_disposition="append")
        with pytest.raises(
            SourceError, match=rf"source 'drops': the folder {tmp_path / 'nope'} of .* not exist"
        ):
            FileSource("drops", config).extract().collect()
    bucket, options = s3_bucket
    for url, ok in ((f"s3://{bucket}/in/*.csv", True), ("s3://no-such-bucket/in/*.csv", False)):
        config = _source(url, incremental=True, write_disposition="append", storage_options=options)
        if ok:
            assert FileSource("drops", config).extract().collect().height == 0
            continue
        with pytest.raises(SourceError, match="the bucket no-such-bucket of .* does not exist"):
            FileSource("drops", config).extract().collect()


def test_incremental_reads_only_new_or_changed_files(tmp_path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "1.csv").write_text("id\n1\n2\n")
    (drop / "2.csv").write_text("id\n3\n")
    source = FileSource(
        "drops", _source(drop / "*.csv", incremental=True, write_disposition="append")
    )
    first = source.extract({})
    assert sorted(first.collect()["id"].to_list()) == ["1", "2", "3"]
    state = first.state
    assert set(state["manifest"]) == {str(drop / "1.csv"), str(drop / "2.csv")}
    assert state["lineage"]["rows"] == 3

    nothing = source.extract(state)
    assert nothing.collect().height == 0 and nothing.rows == 0  # a rerun extracts nothing

    os.utime(drop / "2.csv", (1, 1))  # touched, same content: still nothing
    (drop / "1.csv").write_text("id\n1\n2\n20\n")  # changed
    (drop / "3.csv").write_text("id\n4\n")  # new
    again = source.extract(state)
    assert sorted(again.collect()["id"].to_list()) == ["1", "2", "20", "4"]
    assert source.extract(again.state).collect().height == 0

    # without committing, a rerun re-extracts the same files: a crash never skips
    assert sorted(source.extract(state).collect()["id"].to_list()) == ["1", "2", "20", "4"]


def test_state_is_refused_before_every_batch_is_read(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n2\n")
    extraction = FileSource("a", _source(tmp_path / "a.csv", batch_rows=1)).extract()
    with pytest.raises(SourceError, match="read every batch before taking the new state"):
        _ = extraction.state
    next(iter(extraction))
    with pytest.raises(SourceError, match="already read"):
        extraction.collect()


def test_bad_files_are_clear_errors(tmp_path) -> None:
    whole = gzip.compress(b"id\n" + b"1\n" * 10_000)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match=r"source 't': .*cut\.csv\.gz is not a complete gzip"):
        FileSource("t", _source(tmp_path / "cut.csv.gz")).extract().collect()
    (tmp_path / "bad.xlsx").write_bytes(b"this is not a workbook")
    with pytest.raises(SourceError, match=r"source 't': cannot read .*bad\.xlsx as xlsx"):
        FileSource("t", _source(tmp_path / "bad.xlsx", format="xlsx")).extract().collect()
    with zipfile.ZipFile(tmp_path / "broken.xlsx", "w") as z:
        z.writestr("nothing.txt", "a zip, but not a workbook")
    with pytest.raises(SourceError, match=r"cannot read .*broken\.xlsx as xlsx"):
        FileSource("t", _source(tmp_path / "broken.xlsx", format="xlsx")).extract().collect()
    (tmp_path / "bad.json").write_text('[{"id": 1}, {"id": ')
    with pytest.raises(SourceError, match=r"cannot read .*bad\.json as json"):
        FileSource("t", _source(tmp_path / "bad.json", format="json")).extract().collect()
    with pytest.raises(SourceError, match=r"no file matches .*\*\.csv"):
        FileSource("t", _source(tmp_path / "none" / "*.csv")).extract().collect()


@pytest.fixture
def s3_bucket(monkeypatch) -> Iterator[tuple[str, dict[str, str]]]:
    """A bucket on moto's S3-compatible server, run here on 127.0.0.1 (no AWS involved)."""
    from moto.server import ThreadedMotoServer

    from .push_support import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)  # credentials come from the environment only
    options = {"endpoint_url": f"http://127.0.0.1:{port}"}
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    bucket = f"drops-{secrets.token_hex(4)}"
    fs.mkdir(bucket)
    try:
        yield bucket, options
    finally:
        server.stop()


def test_s3_glob_incremental(s3_bucket) -> None:
    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.pipe(f"{bucket}/in/a.csv", b"id,name\n1,x\n2,y\n")
    fs.pipe(f"{bucket}/in/b.csv.gz", gzip.compress(b"id,name\n3,z\n"))
    fs.pipe(f"{bucket}/other/c.csv", b"id,name\n99,no\n")
    config = _source(
        f"s3://{bucket}/in/*.csv*",
        incremental=True,
        write_disposition="append",
        storage_options=options,
    )
    first = FileSource("drops", config).extract()
    assert sorted(first.collect()["id"].to_list()) == ["1", "2", "3"]
    assert first.lineage.locations == (f"s3://{bucket}/in/a.csv", f"s3://{bucket}/in/b.csv.gz")
    assert FileSource("drops", config).extract(first.state).collect().height == 0
    fs.pipe(f"{bucket}/in/d.csv", b"id,name\n4,w\n")
    assert FileSource("drops", config).extract(first.state).collect()["id"].to_list() == ["4"]
