"""Compact CSV reading: integer columns parsed by the reader, verified lossless; the rest
dictionary-encoded text.

Read as text, every CSV value costs a string of 16 bytes or more, and typing parses it a
second time. With ``compact = true`` a local, uncompressed UTF-8 file is read once, by
pyarrow: the columns whose first rows (:data:`SAMPLE_ROWS`) infer to integers are parsed as
integers, the others arrive as dictionary-encoded text (:mod:`featurepipe.schema.text`).

A parsed number is not always what its text says: ``007``, ``+7``, `` 7`` and ``-0`` read
as 7 and 0, and inference keeps ``007`` text. So the read is used only when every byte of the
file is accounted for: the file's size must equal its header, one separator between fields,
one newline per row, the length of every text value, the digits (and minus sign) of every
integer written in its own form, and the null token of every missing integer. Any other
spelling of a number adds bytes, and the reader rejects what it cannot take (a short row, a
non-number, an empty or other null value, a number beyond the column's width), so a file
that adds up holds every integer exactly as the integer's own form. A file with quotes,
carriage returns or a byte-order mark, or whose read fails or does not add up, is read as
text instead; nothing is lost either way, only time.

Columns whose integers are all 0 or 1 stay text, so typing decides between a flag and a
number on all their values, as it does for text.
"""

from __future__ import annotations

import io
import logging
import mmap
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from ..schema.infer import InferenceOptions, infer_frame
from ..schema.names import unique_names
from ..schema.text import text_dtype

__all__ = ["SAMPLE_ROWS", "CompactUnavailable", "CsvLayout", "read_compact"]

log = logging.getLogger(__name__)

SAMPLE_ROWS = 20_000
_INTEGERS = ("int8", "int16", "int32", "int64")
_WIDTHS: tuple[tuple[pl.DataType, int], ...] = (
    (pl.Int8(), 8),
    (pl.Int16(), 16),
    (pl.Int32(), 32),
    (pl.Int64(), 64),
)
_BLOCK_BYTES = 1 << 22
_PROBE_BYTES = 1 << 20  # where quotes and carriage returns are looked for
_TEXT = pa.dictionary(pa.int32(), pa.string())
# the sample's width, at least 16 bits (a byte is soon too narrow); wider values widen it
_ARROW_WIDTH = {"int8": pa.int16(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64()}


class CompactUnavailable(Exception):  # noqa: N818 (a reason to read as text, not an error)
    """The file cannot be read compactly; the message says why. Read it as text."""


@dataclass(frozen=True)
class CsvLayout:
    """How the file is laid out (the file source's options)."""

    delimiter: str
    has_header: bool
    skip_rows: int


def read_compact(
    path: str,
    layout: CsvLayout,
    null_values: Sequence[str],
    text: dict[str, pl.DataType],
    skip: Collection[str] = (),
) -> pl.DataFrame:
    """Read a local CSV file compactly (see the module docstring).

    Args:
        path: the local file.
        layout: delimiter, header and lines to skip.
        null_values: the source's null tokens.
        text: the dictionary-encoded dtype of each text column, shared by the files of
            one extraction; new columns are added.
        skip: columns to keep text whatever they hold: hinted columns, by their name in
            the file or their normalized name.

    Returns:
        The frame: integer columns typed, the others dictionary-encoded text.

    Raises:
        CompactUnavailable: the file has to be read as text; the message says why.
    """
    shape = _scan_bytes(path, layout, SAMPLE_ROWS)
    sample = pl.read_csv(
        io.BytesIO(shape.head),
        n_rows=SAMPLE_ROWS,
        separator=layout.delimiter,
        has_header=layout.has_header,
        skip_rows=layout.skip_rows,
        infer_schema=False,
        empty_string_is_null=False,
    )
    names = sample.columns
    if len(names) == 1 and _lone_carriage_returns(path):
        raise CompactUnavailable("carriage returns")
    integers, token = _integer_columns(sample, null_values, skip)
    table, token = _read_table(path, layout, names, integers, token, null_values)
    if table.num_rows == 0:
        raise CompactUnavailable("no rows")
    read = _Read.of(table, integers)
    del table
    counted = read.value_bytes(len(token or ""))
    expected = shape.start + read.rows * len(names) - int(not shape.final_newline) + counted
    if expected != shape.size:
        raise CompactUnavailable(
            f"{shape.size - expected:+d} bytes not accounted for: some values are not "
            "written in their own form (leading zeros, signs, spaces) or lines were skipped"
        )
    return read.frame(text).select(names)


_RETRIES = 4
_MISFIT = re.compile(r"In CSV column #(\d+): CSV conversion error to \w+: invalid value '(.*)'")
_WIDER = {"int16": pa.int32(), "int32": pa.int64()}


def _read_table(
    path: str,
    layout: CsvLayout,
    names: list[str],
    integers: dict[str, pa.DataType],
    token: str | None,
    null_values: Sequence[str],
) -> tuple[pa.Table, str | None]:
    """The whole file as an Arrow table, and the null token of its integer columns.

    When an integer column meets a value it cannot take, the file is read again: with the
    column widened for a wider number, with that token for the first null token met, or
    with the column as text for anything else.
    """
    for _ in range(_RETRIES + 1):
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(
                    column_names=names,
                    skip_rows=layout.skip_rows + int(layout.has_header),
                    block_size=_BLOCK_BYTES,
                ),
                parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: integers.get(name, _TEXT) for name in names},
                    null_values=[] if token is None else [token],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
                memory_pool=pa.system_memory_pool(),  # gives memory back when freed
            )
            return table, token
        except pa.ArrowException as exc:
            misfit = _MISFIT.search(str(exc))
            if misfit is None or names[int(misfit[1])] not in integers:
                raise CompactUnavailable(f"the reader stopped: {exc}") from exc
            name, value = names[int(misfit[1])], misfit[2]
            wider = _WIDER.get(str(integers[name]))
            if re.fullmatch(r"-?[0-9]+", value) and wider is not None:
                integers[name] = wider
            elif token is None and value in null_values:
                token = value
            else:
                del integers[name]  # text: typing decides on all its values
            log.debug("%s: column %r read again (%r does not fit)", path, name, value)
    raise CompactUnavailable(f"more than {_RETRIES} integer columns did not fit")


@dataclass(frozen=True)
class _Shape:
    size: int
    start: int  # bytes before the first data row
    final_newline: bool
    head: bytes  # the first lines, whole: the sample's rows at least (or the whole file)


def _scan_bytes(path: str, layout: CsvLayout, sample_rows: int) -> _Shape:
    """The file's size, header length and first lines; refuse what the byte count cannot
    account for.

    Quotes and ``\r\n`` line ends only ever add bytes the count does not see (a quote is
    never part of the value it encloses; a blank line is skipped), so a file holding them
    anywhere does not add up and is read as text: looking for them in the first
    :data:`_PROBE_BYTES` only spares reading twice a file that quotes its values. A lone
    carriage return is the one exception (see :func:`_lone_carriage_returns`).
    """
    if len(layout.delimiter.encode()) != 1:
        raise CompactUnavailable("the delimiter is not a single byte")
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            raise CompactUnavailable("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:3] == b"\xef\xbb\xbf":
                raise CompactUnavailable("a byte-order mark")
            start = 0
            for _ in range(layout.skip_rows + int(layout.has_header)):
                start = data.find(b"\n", start) + 1
                if start == 0:
                    raise CompactUnavailable("no data rows")
            head = _head(data, start, sample_rows)
            for byte, what in ((b'"', "quotes"), (b"\r", "carriage returns")):
                if data.find(byte, 0, max(_PROBE_BYTES, len(head))) >= 0:
                    raise CompactUnavailable(what)
            final_newline = data[size - 1 : size] == b"\n"
    return _Shape(size=size, start=start, final_newline=final_newline, head=head)


def _head(data: mmap.mmap, start: int, rows: int) -> bytes:
    """The file up to the end of its ``rows``-th line after ``start`` (or the whole file)."""
    end = start + 128 * rows  # doubled until it holds the rows
    while True:
        head = data[: min(end, len(data))]
        ends = np.flatnonzero(np.frombuffer(head, np.uint8, offset=start) == ord("\n"))
        if len(ends) >= rows:
            return head[: start + int(ends[rows - 1]) + 1]
        if end >= len(data):
            return head
        end = start + 2 * (end - start)


def _lone_carriage_returns(path: str) -> bool:
    """True if the file holds a carriage return anywhere.

    The reader ends a row at a lone carriage return, one byte as a newline is, so the
    bytes still add up. In a file of two or more columns a row it splits comes out short,
    which the reader refuses, unless the line held one field too many (which reading as
    text refuses instead: the carriage return is then read as the line end it also is). In
    a file of one column it splits a value in two rows, so a one-column file is searched
    whole.
    """
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"\r") >= 0


def _integer_columns(
    sample: pl.DataFrame, null_values: Sequence[str], skip: Collection[str]
) -> tuple[dict[str, pa.DataType], str | None]:
    """The columns the sample infers to integers (as pyarrow types) and the one null token
    they use; a column using another token stays text."""
    nulls = list(null_values)
    names = unique_names(sample.columns)
    digits = sample.select(
        (pl.col(c).str.contains(r"^-?[0-9]+$") | pl.col(c).is_in(nulls)).all()
        for c in sample.columns
    ).row(0, named=True)  # a cheap first cut: inference decides on what is left
    candidates = [c for c in sample.columns if digits[c] and c not in skip and names[c] not in skip]
    types = infer_frame(sample, candidates, InferenceOptions(), nulls)
    found = {
        name: t
        for name, t in types.items()
        if t.logical in _INTEGERS and not t.thousands and not t.trim
    }
    tokens = {
        name: set(sample[name].filter(sample[name].is_in(nulls)).unique().to_list())
        for name in found
    }
    counts = Counter(token for used in tokens.values() for token in used)
    token = counts.most_common(1)[0][0] if counts else None
    integers = {
        name: _ARROW_WIDTH[t.logical] for name, t in found.items() if tokens[name] <= {token}
    }
    return integers, token


@dataclass
class _Read:
    """The file as read: integer columns, and text columns as codes into their dictionary."""

    integers: pl.DataFrame
    codes: pl.DataFrame
    dictionaries: dict[str, pl.Series]  # each text column's distinct values, by code
    rows: int

    @classmethod
    def of(cls, table: pa.Table, integers: Collection[str]) -> _Read:
        numbers, codes, dictionaries = [], [], {}
        for name in table.column_names:
            array = table.column(name)
            if name in integers:
                numbers.append(_series(array).rename(name))
                continue
            unified = array.unify_dictionaries()
            chunks = unified.chunks
            values = chunks[0].dictionary if chunks else pa.array([], pa.string())
            dictionaries[name] = _series(values)
            codes.append(
                _series(pa.chunked_array([c.indices for c in chunks], pa.int32())).rename(name)
            )
        return cls(pl.DataFrame(numbers), pl.DataFrame(codes), dictionaries, table.num_rows)

    def value_bytes(self, token_length: int) -> int:
        """The bytes the values take in the file, each integer written in its own form."""
        text = self.codes.select(
            pl.lit(self.dictionaries[c].str.len_bytes()).gather(pl.col(c)).sum().alias(c)
            for c in self.codes.columns
        )
        total = sum(text.row(0)) if text.width else 0
        if not self.integers.width:
            return total
        ranges = self._ranges()
        digits = []
        for name in self.integers.columns:
            low, high = ranges[f"{name}\0min"], ranges[f"{name}\0max"]
            values = pl.col(name)
            digits.append(values.count() + (values < 0).sum())
            width = 1 if low is None or high is None else len(str(max(-low, high)))
            digits += [((values >= 10**k) | (values <= -(10**k))).sum() for k in range(1, width)]
            digits.append(values.null_count() * token_length)
        counts = self.integers.select(e.alias(str(i)) for i, e in enumerate(digits))
        return total + sum(counts.row(0))

    def _ranges(self) -> dict[str, int | None]:
        columns = self.integers.columns
        return self.integers.select(
            *(pl.col(c).min().alias(f"{c}\0min") for c in columns),
            *(pl.col(c).max().alias(f"{c}\0max") for c in columns),
        ).row(0, named=True)

    def frame(self, text: dict[str, pl.DataType]) -> pl.DataFrame:
        """Integers in their narrowest width; text (and integer columns of only 0 and 1, a
        flag or a number, or of no value: typing decides on the text) dictionary-encoded."""
        ranges = self._ranges() if self.integers.width else {}
        narrow, as_text = [], []
        for name in self.integers.columns:
            low, high = ranges[f"{name}\0min"], ranges[f"{name}\0max"]
            if low is None or high is None or (low, high) == (0, 1):
                as_text.append(name)
                continue
            limit = max(-low, high + 1)  # b bits hold -2**(b-1) up to 2**(b-1) - 1
            width = next(t for t, bits in _WIDTHS if limit <= 2 ** (bits - 1))
            narrow.append(pl.col(name).cast(width))
        encoded = self.codes.select(
            pl.lit(self.dictionaries[c].cast(text.setdefault(c, text_dtype())))
            .gather(pl.col(c))
            .alias(c)
            for c in self.codes.columns
        )
        numbers = self.integers.select(
            *narrow,
            *(pl.col(c).cast(pl.String).cast(text.setdefault(c, text_dtype())) for c in as_text),
        )
        return pl.concat([f for f in (numbers, encoded) if f.width], how="horizontal")


def _series(array: pa.Array | pa.ChunkedArray) -> pl.Series:
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)  # noqa: S101 (an array converts to a series)
    return series
