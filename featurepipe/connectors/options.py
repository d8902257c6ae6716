"""A connector's options as rows people can read: dotted names, readable types, defaults."""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..config import ColumnHint, table_options

__all__ = ["OptionRow", "format_type", "option_rows"]

# A hint may be written as its type alone: columns = { at = "datetime" }
_ALSO_A_STRING = (ColumnHint,)


@dataclass(frozen=True)
class OptionRow:
    """One option of a connector, nested ones by dotted name (``pagination.style``)."""

    name: str
    type: str
    default: str
    description: str


def format_type(annotation: Any) -> str:
    """A type as a person reads it: ``dict[str, ColumnHint | str]``, ``HttpAuth | None``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is Annotated:
        inner = args[0]
        text = format_type(inner)
        return f"{text} | str" if inner in _ALSO_A_STRING else text
    if origin in (Union, types.UnionType):
        return " | ".join(format_type(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(format_type(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds directly (``X``, ``X | None``, hints)."""
    if get_origin(annotation) is Annotated:
        return _models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _nested(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """The model whose fields an option nests, and the name part leading to them."""
    models = _models(annotation)
    if models:
        return "", models[0]
    if get_origin(annotation) is dict:
        values = _models(get_args(annotation)[1])
        if values:
            return "NAME.", values[0]
    return None


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, BaseModel):
        return "see below"
    return repr(value)


def _rows(model: type[BaseModel], prefix: str, names: list[str]) -> Iterator[OptionRow]:
    for name in names:
        field = model.model_fields[name]
        yield OptionRow(
            f"{prefix}{name}",
            format_type(field.annotation),
            _default(field),
            field.description or "",
        )
        nested = _nested(field.annotation)
        if nested is not None:
            part, inner = nested
            yield from _rows(inner, f"{prefix}{name}.{part}", list(inner.model_fields))


def option_rows(model: type[BaseModel]) -> list[OptionRow]:
    """Every option of a connector's options model, the ones all sources share last.

    A nested model's fields follow their option as ``option.field`` (``pagination.style``;
    ``columns.NAME.type`` for a table of them).
    """
    shared = set(table_options())
    own = [f for f in model.model_fields if f not in shared]
    common = [f for f in model.model_fields if f in shared]
    return list(_rows(model, "", [*own, *common]))
