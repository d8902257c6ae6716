"""What `featurepipe connectors` shows: every option, nested ones dotted, readable types,
and a description for each."""

from __future__ import annotations

import pytest

from featurepipe.connectors import CONNECTORS
from featurepipe.connectors.options import option_rows


@pytest.mark.parametrize("kind", list(CONNECTORS))
def test_every_option_is_listed_with_a_type_and_a_description(kind: str) -> None:
    rows = option_rows(CONNECTORS[kind].options)
    names = [row.name for row in rows]
    assert len(names) == len(set(names))
    assert set(CONNECTORS[kind].options.model_fields) <= set(names)
    missing = [row.name for row in rows if not row.description]
    assert missing == [], f"{kind}: options without a description: {missing}"
    unreadable = [row for row in rows if "Annotated" in row.type or "typing" in row.type]
    assert unreadable == []


def test_nested_options_are_dotted_and_types_read_like_python() -> None:
    rows = {row.name: row for row in option_rows(CONNECTORS["http"].options)}
    assert rows["auth"].type == "HttpAuth | None"
    assert rows["auth.style"].type == "bearer | basic | api_key"
    assert rows["auth.token_env"].type == "str | None"
    assert rows["pagination"].type == "Pagination" and rows["pagination"].default == "see below"
    assert rows["pagination.style"].default == "'none'"
    assert rows["pagination.max_pages"].type == "int | None"
    assert rows["params"].type == "dict[str, str | int | float | bool]"
    assert rows["columns"].type == "dict[str, ColumnHint | str]"
    assert rows["columns.NAME.format"].type == "str | None"
    assert rows["primary_key"].type == "list[str]"
    assert rows["base_url"].default == "(required)"
