"""Every ```toml example in the README is valid configuration, checked by the loader's model
merged into the repository's own featurepipe.toml (an example is a fragment of one)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from featurepipe.config import Config

from .conftest import REPO

BLOCK = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)
EXAMPLES = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], example: dict[str, Any], path: str = "") -> dict[str, Any]:
    merged = dict(base)
    for key, value in example.items():
        replace = path == "sources"  # an example source replaces the project's, kind and all
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not replace:
            merged[key] = _merge(merged[key], value, f"{path}.{key}".lstrip("."))
        else:
            merged[key] = value
    return merged


def test_the_readme_has_toml_examples() -> None:
    assert len(EXAMPLES) >= 8
    assert any('kind = "http"' in example for example in EXAMPLES)


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[e.splitlines()[0].split("#")[0].strip() for e in EXAMPLES]
)
def test_every_toml_example_is_valid_configuration(example: str, tmp_path: Path) -> None:
    base = tomllib.loads((REPO / "featurepipe.toml").read_text(encoding="utf-8"))
    parsed = tomllib.loads(example)  # a syntax error fails here, naming the line
    merged = _merge(base, parsed)
    config = Config.model_validate({**merged, "project_dir": tmp_path})
    for name in parsed.get("sources", {}):
        assert config.sources[name].kind == parsed["sources"][name].get("kind", "file")
