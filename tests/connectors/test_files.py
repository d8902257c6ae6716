"""The file connector: formats, zipped CSV, and errors that name the source."""

from __future__ import annotations

import zipfile

import polars as pl
import pytest

from featurepipe.config import SourceConfig
from featurepipe.connectors import extract_file
from featurepipe.errors import SourceError


def test_reads_every_column_as_text_from_csv_tsv_and_zip(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id,when\n007,2013-01-01T10:00:00Z\n,NA\n")
    (tmp_path / "a.tsv").write_text("id\twhen\n007\tx\n")
    with zipfile.ZipFile(tmp_path / "a.csv.zip", "w") as z:
        z.write(tmp_path / "a.csv", "a.csv")
    csv = extract_file("a", SourceConfig(path=str(tmp_path / "a.csv")))
    assert csv.frame.schema == pl.Schema({"id": pl.String, "when": pl.String})
    assert csv.frame.rows() == [("007", "2013-01-01T10:00:00Z"), ("", "NA")]  # raw, untouched
    tsv = extract_file("a", SourceConfig(path=str(tmp_path / "a.tsv"), format="tsv"))
    assert tsv.frame.rows() == [("007", "x")]
    zipped = extract_file("a", SourceConfig(path=str(tmp_path / "a.csv.zip")))
    assert zipped.frame.equals(csv.frame) and zipped.rows == 2


def test_real_flights_zip_is_read_whole(config) -> None:
    flights = extract_file("flights", config.sources["flights"])
    assert flights.rows == 336_776
    assert flights.frame.columns[:3] == ["year", "month", "day"]


def test_errors_name_the_table_and_the_file(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"source 'orders': file not found: .*nope\.csv"):
        extract_file("orders", SourceConfig(path=str(tmp_path / "nope.csv")))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n2\n")
    with pytest.raises(SourceError, match="exactly one file, found 2"):
        extract_file("orders", SourceConfig(path=str(tmp_path / "two.zip")))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(
        SourceError, match=r"source 'orders': cannot read .*bad\.parquet as parquet"
    ):
        extract_file("orders", SourceConfig(path=str(tmp_path / "bad.parquet"), format="parquet"))
