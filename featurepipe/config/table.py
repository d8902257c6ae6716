"""Options every kind of source shares: column type hints, contracts and load modes."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# keep in step with featurepipe.schema.infer.DEFAULT_NULL_VALUES (tests check it)
DEFAULT_NULL_VALUES = ("", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "None", "NaN", "nan", "-")

# keep in step with featurepipe.schema.types.LOGICAL_TYPES and ALIASES (tests check it)
LogicalType = Literal[
    "bool", "int8", "int16", "int32", "int64", "uint64", "decimal", "float", "text",
    "categorical", "date", "time", "datetime", "local_datetime", "duration", "json",
    "int", "integer", "string", "boolean",
]  # fmt: skip
ContractMode = Literal["evolve", "freeze", "discard_row", "discard_value"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hint_from_string(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class ColumnHint(_Model):
    """A declared type for one column (overrides inference) and its contract mode."""

    type: LogicalType | None = Field(default=None, description="None: inferred")
    format: str | None = Field(
        default=None, description="strptime format for date/time/datetime, e.g. '%d/%m/%Y'"
    )
    contract: ContractMode | None = Field(
        default=None, description="this column's contract mode; default: the table's"
    )


Hint = Annotated[ColumnHint, BeforeValidator(_hint_from_string)]


class _TableConfig(_Model):
    """Options every source shares: how its table is typed, keyed and loaded.

    Other stages add their table-level options here (schema contracts, load modes), so
    every kind of source gets them.
    """

    primary_key: list[str] = Field(
        default_factory=list, description="columns that identify a row (dedup, incremental)"
    )
    columns: dict[str, Hint] = Field(
        default_factory=dict, description="type hints, e.g. { at = 'datetime' }"
    )
    null_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NULL_VALUES), description="text that means null"
    )
    write_disposition: Literal["replace", "append", "merge"] = Field(
        default="replace",
        description="replace the table, append rows, or merge (upsert on primary_key)",
    )
    delete_column: str | None = Field(
        default=None, description="merge only: a boolean column; true deletes the row's key"
    )
    contract: ContractMode = Field(
        default="evolve", description="evolve | freeze | discard_row | discard_value"
    )
    day_first: bool | None = Field(
        default=None, description="order of dates such as 01/02/2013 when the data cannot tell"
    )
    categorical_limit: int = Field(
        default=256, ge=0, description="most distinct values of a categorical text column"
    )

    def typing_options(self) -> dict[str, Any]:
        """The keyword arguments of ``featurepipe.apply_schema`` this source sets."""
        return {
            "hints": self.columns,
            "null_values": self.null_values,
            "contract": self.contract,
            "day_first": self.day_first,
            "categorical_limit": self.categorical_limit,
        }

    @model_validator(mode="after")
    def _check_disposition(self) -> Self:
        if self.write_disposition == "merge" and not self.primary_key:
            raise ValueError("write_disposition 'merge' needs primary_key")
        if self.delete_column is not None and self.write_disposition != "merge":
            raise ValueError("delete_column needs write_disposition 'merge'")
        return self

    def _require_incremental_load(self, what: str) -> None:
        if self.write_disposition == "replace":
            raise ValueError(
                f"{what} extracts only what is new, so replacing the table would drop the "
                "rows loaded before; set write_disposition to a mode that keeps them (append)"
            )


def table_options() -> list[str]:
    """Names of the options every kind of source shares."""
    return list(_TableConfig.model_fields)


def _url_has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    return bool(urlsplit(url).password)
