"""`featurepipe promote` moves alias champion: the next run reruns only the step scoring with it.

A step that loads ``models:/NAME@champion`` reports the version it got; the cache checks
that version as it checks a table's. Real kernels, a real sqlite MLflow store and
registry, and a real (dummy) scikit-learn model registered as ``03_train`` does.
"""

from __future__ import annotations

import pandas as pd
from sklearn.dummy import DummyClassifier

import featurepipe as fp
from featurepipe import registry, tracking
from featurepipe.flow import explain_flow, run_flow

from ..conftest import run_cli
from .conftest import A_LOAD, FLOW_PARAMS, TOML, Tiny, write_notebook

C_SCORE = (
    FLOW_PARAMS,
    """
import featurepipe as fp

config = fp.load_config(project_dir)
step = fp.open_step(config, "c_score", mlflow_run_id)
model = fp.registry.load_registered_model("tiny-model", alias="champion")
fp.finish_step(step, "c_score", run_dir, {"version": model.version})
""",
)


def _project(tiny: Tiny) -> Tiny:
    """The tiny project with a_load, then c_score, which scores with the champion."""
    write_notebook(tiny.root / "notebooks" / "c_score.ipynb", *C_SCORE)
    write_notebook(tiny.root / "notebooks" / "a_load.ipynb", *A_LOAD)
    toml = TOML.format(flow="").replace('["a_load", "b_stats"]', '["a_load", "c_score"]')
    (tiny.root / "featurepipe.toml").write_text(
        toml.replace("[model]\n", '[model]\nname = "tiny-model"\n')
    )
    return tiny


def _train_candidate(tiny: Tiny, roc_auc: float) -> int:
    """What 03_train leaves behind: a run with passed gates and a test metric, a candidate."""
    config = tiny.config
    step = fp.open_step(config, "train")
    registry.log_gates({"beats_baseline": True})
    tracking.log_metrics({"test_roc_auc": roc_auc})
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    model = DummyClassifier(strategy="prior").fit(frame, [0, 1, 0, 1])
    version = registry.log_registered_model(
        model, registered_name="tiny-model", alias="candidate", input_example=frame
    )
    tracking.end_step(step)
    return version


def test_promote_reruns_only_the_step_that_scores_with_the_champion(tiny: Tiny) -> None:
    project = _project(tiny)
    assert _train_candidate(project, 0.6) == 1
    assert registry.promote("tiny-model", metric="roc_auc").promoted  # the first champion
    first = run_flow(project.config)
    assert [s.status for s in first.steps] == ["finished", "finished"]
    assert project.summary(first.run_dir, "c_score") == {"version": 1}

    assert _train_candidate(project, 0.7) == 2  # a new candidate: the champion has not moved
    assert [d.runs for d in explain_flow(project.config)] == [False, False]

    result = run_cli("promote", cwd=project.root, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "v2 is now champion (was v1)" in " ".join(result.stdout.split())
    decisions = explain_flow(project.config)
    assert [d.runs for d in decisions] == [False, True]
    assert decisions[1].reason == "input model:tiny-model/champion changed (1 -> 2)"

    again = run_flow(project.config)
    assert [s.status for s in again.steps] == ["up to date", "finished"]
    assert project.summary(again.run_dir, "c_score") == {"version": 2}
    assert [d.runs for d in explain_flow(project.config)] == [False, False]
