"""Zipped CSV and NDJSON (plain, gzip or zip) stream in bounded batches, read as when they
were read whole, and keep the manifest digests those reads wrote."""

from __future__ import annotations

import gzip
import hashlib
import zipfile

import polars as pl
import pytest

from featurepipe.config import FileSourceConfig
from featurepipe.connectors import FileSource, files
from featurepipe.errors import SourceError

from .test_file_streams import TRICKY, _never_whole, _read

RECORDS = "".join(f'{{"id": {i}, "name": "n{i}", "tags": ["a", "b"]}}\n' for i in range(2_500))


def test_a_zipped_csv_streams_and_reads_like_polars(tmp_path, monkeypatch) -> None:
    (tmp_path / "plain.csv").write_text(TRICKY, encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "packed.csv.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner.csv", TRICKY)
    expected = pl.concat(_read(str(tmp_path / "plain.csv"), batch_rows=700))
    whole = _read(str(tmp_path / "packed.csv.zip"), batch_rows=700)  # small: read whole
    assert pl.concat(whole).equals(expected)
    monkeypatch.setattr(files, "ZIP_READ_WHOLE_BYTES", 1_000)  # this one streams
    _never_whole(monkeypatch)
    frames = _read(str(tmp_path / "packed.csv.zip"), batch_rows=700)
    assert max(f.height for f in frames) <= 700 and len(frames) >= 8
    assert pl.concat(frames).equals(expected)


@pytest.mark.parametrize("name", ["rows.ndjson.gz", "rows.ndjson.zip"])
def test_compressed_ndjson_streams_in_batches(tmp_path, monkeypatch, name: str) -> None:
    (tmp_path / "rows.ndjson").write_text(RECORDS)
    if name.endswith(".gz"):
        (tmp_path / name).write_bytes(gzip.compress(RECORDS.encode()))
    else:
        with zipfile.ZipFile(tmp_path / name, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("rows.ndjson", RECORDS)
    expected = pl.read_ndjson(tmp_path / "rows.ndjson")
    _never_whole(monkeypatch)
    frames = _read(str(tmp_path / name), format="ndjson", batch_rows=1_000)
    assert [f.height for f in frames] == [1_000, 1_000, 500]
    assert pl.concat(frames).equals(expected)


def test_manifest_digests_are_those_of_the_content_read_whole_before(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "a.csv.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", "id\n1\n2\n")
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(b'{"id": 3}\n'))
    for name, content, options in (
        ("a.csv.zip", b"id\n1\n2\n", {}),
        ("b.ndjson.gz", b'{"id": 3}\n', {"format": "ndjson"}),
    ):
        config = FileSourceConfig(
            path=str(tmp_path / name), incremental=True, write_disposition="append", **options
        )
        extraction = FileSource("t", config).extract()
        assert extraction.collect().height == len(content.splitlines()) - (name == "a.csv.zip")
        [entry] = extraction.state["manifest"].values()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest(), name


def test_a_broken_or_crowded_zip_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "bad.csv.zip").write_bytes(b"not a zip at all")
    with pytest.raises(SourceError, match=r"source 't': .*bad\.csv\.zip is not a zip file"):
        _read(str(tmp_path / "bad.csv.zip"))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:
        archive.writestr("a.csv", "x\n1\n")
        archive.writestr("b.csv", "x\n2\n")
    with pytest.raises(SourceError, match="exactly one file, found 2"):
        _read(str(tmp_path / "two.zip"))
