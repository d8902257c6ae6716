"""The notebooks are parameterized, thin and committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurepipe.flow import FLOW_PARAMETERS, notebook_parameters

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_four_steps_exist() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01_ingest", "02_features", "03_train", "04_predict"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_parameterized_thin_and_clean(path: Path) -> None:
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    assert set(FLOW_PARAMETERS) <= set(notebook_parameters(path))
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        source = "".join(cell["source"])
        assert "\ndef " not in f"\n{source}" and "\nclass " not in f"\n{source}", (
            "keep logic in featurepipe/"
        )
    assert any("import featurepipe as fp" in "".join(c["source"]) for c in code)
