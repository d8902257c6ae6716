"""Profile a raw table for ``featurepipe schema``: type, null share, examples and misfits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from .contract import apply_schema
from .infer import DEFAULT_NULL_VALUES, InferenceOptions, infer_dominant
from .text import as_strings

__all__ = ["profile_table"]


def profile_table(
    table: str,
    frame: pl.DataFrame,
    hints: Mapping[str, Any] | None = None,
    null_values: Sequence[str] = DEFAULT_NULL_VALUES,
    *,
    day_first: bool | None = None,
    categorical_limit: int = 256,
    examples: int = 3,
    **_: Any,
) -> pl.DataFrame:
    """One row per column: the type it gets, its null share, examples, and misfits.

    Misfits are the values that did not fit, with counts: for a hinted column the values
    that fail the hint; for a column left as text that *almost* has a type (at least 80%
    of its values are numbers or dates of one type), the values that kept it text.

    Args:
        table: table name.
        frame: raw frame as extracted.
        hints: column hints, as for :func:`~featurepipe.schema.apply_schema`.
        null_values: null tokens.
        day_first: order of ambiguous regional dates.
        categorical_limit: most distinct values of a categorical column.
        examples: how many example values to show.

    Returns:
        Columns ``column``, ``name``, ``type``, ``null_share``, ``examples``, ``misfits``
        and ``note``.
    """
    typed = apply_schema(
        table, frame, hints, null_values, day_first=day_first, categorical_limit=categorical_limit
    )
    options = InferenceOptions(day_first=day_first, categorical_limit=categorical_limit)
    nulls = list(null_values)
    rows = []
    for column in typed.schema.columns.values():
        values = as_strings(frame[column.original])
        if values.dtype == pl.String and nulls:
            values = values.set(values.is_in(nulls), None)
        present = values.drop_nulls()
        misfits = typed.quarantine.filter(pl.col("column") == column.original)["value"]
        note = column.type.note
        if misfits.len() == 0 and column.type.logical in ("text", "categorical"):
            near, misfits = infer_dominant(present, options)
            if near is not None:
                note = f"{misfits.len()} value(s) keep it from {near.describe()}"
        rows.append(
            {
                "column": column.original,
                "name": column.name,
                "type": column.type.describe(),
                "null_share": values.null_count() / values.len() if values.len() else 0.0,
                "examples": ", ".join(
                    repr(v) for v in present.unique(maintain_order=True).head(examples).to_list()
                ),
                "misfits": _counted(misfits),
                "note": note or "",
            }
        )
    return pl.DataFrame(
        rows,
        schema={"column": pl.String, "name": pl.String, "type": pl.String,
                "null_share": pl.Float64, "examples": pl.String, "misfits": pl.String,
                "note": pl.String},
    )  # fmt: skip


def _counted(values: pl.Series, limit: int = 5) -> str:
    if values.len() == 0:
        return ""
    counts = values.value_counts(sort=True).head(limit).rows()
    text = ", ".join(f"{v!r} ×{n}" for v, n in counts)
    more = values.n_unique() - len(counts)
    return text + (f" (+{more} more)" if more > 0 else "")
