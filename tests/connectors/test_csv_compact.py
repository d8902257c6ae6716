"""Compact CSV reading: integers parsed by the reader only when the file's bytes prove every
one is written in its own form; typed, it always gives what reading as text gives."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurepipe.config import ColumnHint, FileSourceConfig
from featurepipe.connectors import FileSource, extract_source
from featurepipe.connectors.csv_compact import _PROBE_BYTES, SAMPLE_ROWS
from featurepipe.schema import apply_schema
from featurepipe.schema.text import is_encoded

ROWS = SAMPLE_ROWS + 5_000  # values past the first rows are never seen by the sample
LATE = SAMPLE_ROWS + 3_000  # the data row a late value sits on (1-based)


def _typed(path: Path, compact: bool, **options):
    source = FileSourceConfig(path=str(path), compact=compact, **options)
    extraction = extract_source("t", source)
    return apply_schema("t", extraction, **source.typing_options())


def _raw(path: Path, **options) -> pl.DataFrame:
    return (
        FileSource("t", FileSourceConfig(path=str(path), compact=True, **options))
        .extract()
        .collect()
    )


def _same_as_text(path: Path, **options):
    """Type the file read compactly and read as text; both must agree exactly."""
    compact, text = _typed(path, True, **options), _typed(path, False, **options)
    assert compact.types == text.types
    assert compact.frame.equals(text.frame)
    assert compact.quarantine.equals(text.quarantine)
    return compact


def _write(path: Path, late: str = "17", *, rows: int = ROWS) -> Path:
    """A file with a number column ``n`` whose row ``LATE`` holds ``late`` (``early|late``:
    row 5 holds ``early``)."""
    n = [str(i % 900 - 300) for i in range(rows)]
    if "|" in late:
        n[4], late = late.split("|")
    n[LATE - 1] = late
    frame = pl.DataFrame(
        {"id": [str(i) for i in range(rows)], "n": n, "code": ["AB", "C"] * (rows // 2)}
    )
    lines = ["id,n,code", *(",".join(r) for r in frame.rows())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_integers_arrive_typed_and_text_dictionary_encoded(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    path = _write(tmp_path / "a.csv")
    raw = _raw(path)
    assert raw.schema["id"] == pl.Int16 and raw.schema["n"] == pl.Int16
    assert is_encoded(raw.schema["code"]) and raw["code"].cast(pl.String)[:2].to_list() == [
        "AB",
        "C",
    ]
    assert "read as text" not in caplog.text
    typed = _same_as_text(path)
    assert typed.types == {"id": "int16", "n": "int16", "code": "categorical"}


@pytest.mark.parametrize(
    ("late", "read", "expected"),
    [
        # not the integer's own form: the bytes do not add up, the file is read as text
        ("0042", "text", "text"),  # an integer would drop the zeros
        ("+42", "text", "int16"),  # inference takes the sign, from the text
        (" 42", "text", "int16"),
        ("-0", "text", "int16"),
        ("NA", "Int16", "int16"),  # the null token
        ("", "Int16", "int16"),  # the first null token met
        ("NA|", "text", "int16"),  # a second null token (NA at row 5, then ""): as text
        ("4.5", "text", "float"),
        ("x12", "text", "text"),
        ("40000", "Int32", "int32"),  # wider than the sample: the column widens
        ("99999999999", "Int64", "int64"),
    ],
)
def test_a_value_past_the_sample_widens_the_column_or_keeps_it_text(
    tmp_path, late, read, expected
) -> None:
    path = _write(tmp_path / "late.csv", late)
    raw = _raw(path, null_values=["NA", ""])
    assert (str(raw.schema["n"]) if read != "text" else is_encoded(raw.schema["n"])) in (read, True)
    typed = _same_as_text(path, null_values=["NA", ""])
    assert typed.types["n"] == expected
    value = typed.frame["n"][LATE - 1]
    if expected == "text":
        assert value == late.split("|")[-1]  # kept exactly as written, never nulled
    elif late in ("NA", "", "NA|"):
        assert value is None
    else:
        assert float(value) == float(late)


def test_a_bad_value_past_the_sample_is_quarantined_under_a_hint(tmp_path) -> None:
    path = _write(tmp_path / "bad.csv", "x12")
    typed = _same_as_text(path, columns={"n": ColumnHint(type="int")})
    assert typed.types["n"] == "int64"
    assert typed.quarantine.select("row", "column", "value").rows() == [(LATE, "n", "x12")]
    assert typed.frame.height == ROWS - 1


@pytest.mark.parametrize(
    ("content", "compact"),
    [
        ('a,b\n1,"x,y"\n2,z\n', False),  # quotes
        ("a,b\r\n1,x\r\n2,z\r\n", False),  # carriage returns
        ("\ufeffa,b\n1,x\n2,z\n", False),  # a byte-order mark
        ("a,b\n1,x\n\n2,z\n", False),  # a blank line
        ("a,b\n1,x\n2\n", False),  # a short row
        ("a,b\n1,x\n2,z", True),  # no newline at the end: still counted
        ("a;b\n1;x\n2;z\n", True),  # another delimiter
    ],
)
def test_files_whose_bytes_cannot_be_counted_are_read_as_text(tmp_path, content, compact) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content.encode())
    delimiter = ";" if ";" in content else None
    raw = _raw(path, delimiter=delimiter)
    assert raw.schema["a"].is_integer() is compact
    _same_as_text(path, delimiter=delimiter)


@pytest.mark.parametrize(
    ("late", "columns"),
    [
        ('"7",x', 2),  # a quoted number: 7 read, 3 bytes in the file
        ('8,"a,b"', 2),  # a quoted delimiter
        ("9,x\r", 2),  # a Windows line end
        ("1\r2", 1),  # a lone carriage return: the reader would take two rows 1 and 2
    ],
)
def test_quotes_and_carriage_returns_past_the_first_megabyte_are_read_as_text(
    tmp_path, late, columns
) -> None:
    """Only the first ``_PROBE_BYTES`` are searched for quotes and carriage returns: the
    byte count (or the one-column search) must catch the rest."""
    rows = [f"{i},x" if columns == 2 else f"{i}" for i in range(200_000)]
    rows[190_000] = late
    path = tmp_path / "late.csv"
    content = ("a,b\n" if columns == 2 else "a\n") + "\n".join(rows) + "\n"
    path.write_text(content, newline="")
    assert content.index(late) > _PROBE_BYTES
    assert not _raw(path).schema["a"].is_integer()
    typed = _same_as_text(path)
    if columns == 1:  # one value, exactly as written
        assert typed.frame.height == 200_000 and typed.frame["a"][190_000] == "1\r2"


def test_header_options_hints_and_flags(tmp_path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("junk line\n1\t0\t5\n2\t1\t6\n3\t1\t7\n")
    options = {"format": "tsv", "has_header": False, "skip_rows": 1}
    hints = {"column_2": ColumnHint(type="int")}
    raw = _raw(path, **options, columns=hints)
    assert raw.columns == ["column_0", "column_1", "column_2"]
    assert raw.schema["column_0"] == pl.Int8
    assert is_encoded(raw.schema["column_1"])  # only 0 and 1: a flag or a number
    assert is_encoded(raw.schema["column_2"])  # hinted: typing checks every value
    typed = _same_as_text(path, **options, columns=hints)
    assert typed.types == {"column_0": "int8", "column_1": "bool", "column_2": "int64"}


def test_files_read_compactly_and_as_text_join_as_text(tmp_path) -> None:
    (tmp_path / "1.csv").write_text("n\n1\n2\n")
    (tmp_path / "2.csv").write_text('n\n"007"\n3\n')  # quotes: read as text
    raw = _raw(tmp_path / "*.csv")
    assert raw.schema["n"] == pl.String and raw["n"].to_list() == ["1", "2", "007", "3"]
    assert _same_as_text(tmp_path / "*.csv").types == {"n": "text"}


_CELL = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["0", "1", "007", "+3", "-0", " 4", "NA", "", "x", "2.5"]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(_CELL, _CELL), min_size=1, max_size=40))
def test_any_file_types_the_same_read_compactly_or_as_text(tmp_path, rows) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,b\n" + "".join(f"{a},{b}\n" for a, b in rows))
    _same_as_text(path, null_values=["NA", ""])
