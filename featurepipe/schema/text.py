"""Raw text columns: plain strings, or dictionary-encoded, each distinct value stored once.

Dictionary-encoded text is a polars ``Categorical`` whose categories belong to the
``featurepipe.text`` namespace, one set of categories per column. It is the same text,
value for value, in a fraction of the memory (a 4-byte code per value; a string takes 16
bytes or more), and typing parses each distinct value once instead of every value. The file
connector reads it with ``compact = true``, and ``apply_schema`` given an extraction's
batches encodes each batch's strings as it arrives, so a large table's text is never held
whole as strings. Categorical columns from a source (a Parquet file written with
categoricals) are typed at the source and are not raw text.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

__all__ = [
    "TEXT_NAMESPACE",
    "as_strings",
    "concat_raw",
    "encode_batches",
    "is_encoded",
    "is_text",
    "map_encoded",
    "text_dtype",
]

TEXT_NAMESPACE = "featurepipe.text"


def text_dtype() -> pl.DataType:
    """A new dictionary-encoded text dtype, with its own set of categories."""
    return pl.Categorical(pl.Categories.random(namespace=TEXT_NAMESPACE))


def is_encoded(dtype: pl.DataType) -> bool:
    """True for dictionary-encoded raw text (see the module docstring)."""
    return isinstance(dtype, pl.Categorical) and dtype.categories.namespace() == TEXT_NAMESPACE


def is_text(dtype: pl.DataType) -> bool:
    """True for raw text: strings, plain or dictionary-encoded."""
    return dtype == pl.String or is_encoded(dtype)


def as_strings(values: pl.Series) -> pl.Series:
    """Dictionary-encoded text as plain strings; any other series unchanged."""
    return values.cast(pl.String) if is_encoded(values.dtype) else values


def map_encoded(frame: pl.DataFrame, column: str, expr: pl.Expr) -> pl.Expr:
    """Apply ``expr`` (written for a string column named ``column``) to an encoded column.

    ``expr`` runs once on the column's categories; each value then takes the result of its
    category by its code, so the cost of ``expr`` does not grow with the number of rows.
    """
    dtype = frame.schema[column]
    assert isinstance(dtype, pl.Categorical)  # noqa: S101 (an encoded column)
    categories = dtype.categories.to_series().rename(column)
    lookup = categories.to_frame().select(expr.alias(column)).to_series()
    return pl.lit(lookup).gather(pl.col(column).to_physical())


def encode_batches(batches: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """One frame from ``batches``, their string columns dictionary-encoded batch by batch.

    A column keeps one set of categories across the batches; columns of other types are
    kept as they are.
    """
    dtypes: dict[str, pl.DataType] = {}
    parts = [
        batch.with_columns(
            pl.col(name).cast(dtypes.setdefault(name, text_dtype()))
            for name, dtype in batch.schema.items()
            if dtype == pl.String
        )
        for batch in batches
    ]
    return concat_raw(parts)


def concat_raw(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Raw frames one under the other; columns missing from a frame are null there.

    A column that is text in one frame and typed in another (an integer column of a
    compact read, text in the next file) becomes strings, the typed values written as text:
    typing then decides on all of them.
    """
    frames = list(frames)
    if not frames:
        return pl.DataFrame()
    dtypes: dict[str, set[pl.DataType]] = {}
    for frame in frames:
        for name, dtype in frame.schema.items():
            dtypes.setdefault(name, set()).add(dtype)
    mixed = [n for n, d in dtypes.items() if len(d) > 1 and any(is_text(t) for t in d)]
    if mixed:
        frames = [
            f.with_columns(pl.col(n).cast(pl.String) for n in mixed if n in f.columns)
            for f in frames
        ]
    return pl.concat(frames, how="diagonal_relaxed")
