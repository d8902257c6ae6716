"""Flow order from notebooks or [flow] upstreams, --from/--to, and parameter precedence."""

from __future__ import annotations

import pytest

from featurepipe.errors import ConfigError, FlowError
from featurepipe.flow import notebook_parameters, plan_steps, run_flow

from .conftest import Tiny, write_notebook


def test_notebook_parameters_are_read_with_their_defaults(tiny: Tiny) -> None:
    declared = notebook_parameters(tiny.root / "notebooks" / "a_load.ipynb")
    assert declared == {
        "project_dir": ".", "run_dir": "", "mlflow_run_id": "", "load_id": "",
        "scale": 1, "fail": "",
    }  # fmt: skip


def test_parameters_merge_in_the_documented_order(tiny: Tiny) -> None:
    tiny.set_flow(
        "parameters = { scale = 2, shift = 10 }\n"
        "[flow.steps.b_stats]\nparameters = { shift = 20 }\n"
    )
    by_name = {s.name: s for s in plan_steps(tiny.config, environ={})}
    assert by_name["a_load"].parameters == {"scale": 2}  # [flow.parameters] over the default
    assert by_name["b_stats"].parameters == {"shift": 20}  # the step's own section wins
    env = {"FEATUREPIPE_PARAM_scale": "3", "FEATUREPIPE_PARAM_shift": "30"}
    by_name = {s.name: s for s in plan_steps(tiny.config, environ=env)}
    assert by_name["a_load"].parameters == {"scale": 3}  # environment over featurepipe.toml
    assert by_name["b_stats"].parameters == {"shift": 30}
    by_name = {s.name: s for s in plan_steps(tiny.config, parameters={"scale": 4}, environ=env)}
    assert by_name["a_load"].parameters == {"scale": 4}  # -p wins over everything
    assert by_name["b_stats"].parameters == {"shift": 30}  # and goes only where declared


def test_the_merged_parameter_reaches_the_kernel(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny.set_flow("parameters = { scale = 2 }")
    monkeypatch.setenv("FEATUREPIPE_PARAM_scale", "5")
    result = run_flow(tiny.config, end="a_load")
    assert [s.name for s in result.steps] == ["a_load"]
    assert tiny.summary(result.run_dir, "a_load") == {"rows": 2, "scale": 5}


def test_unknown_parameters_are_refused_naming_where_they_came_from(tiny: Tiny) -> None:
    with pytest.raises(FlowError, match=r"unknown parameter\(s\) \['scael'\]"):
        plan_steps(tiny.config, parameters={"scael": 2}, environ={})
    tiny.set_flow("parameters = { scael = 2 }")
    with pytest.raises(ConfigError, match=r"flow.parameters: unknown parameter\(s\) \['scael'\]"):
        plan_steps(tiny.config, environ={})
    tiny.set_flow("[flow.steps.a_load]\nparameters = { shift = 1 }")
    with pytest.raises(ConfigError, match=r"flow.steps.a_load.parameters.*\['shift'\]"):
        plan_steps(tiny.config, environ={})


def test_upstreams_order_steps_and_select_from_and_to(tiny: Tiny) -> None:
    write_notebook(
        tiny.root / "notebooks" / "c_report.ipynb",
        'project_dir = "."\nrun_dir = ""\nmlflow_run_id = ""\nload_id = ""\n',
        "print('report')",
    )
    # c_report comes first in the list but depends on b_stats: upstreams decide the order.
    tiny.set_flow(
        "[flow.steps.c_report]\nupstream = ['b_stats']\n"
        "[flow.steps.a_load]\nupstream = []\n"
        "[flow.steps.b_stats]\nupstream = ['a_load']\n"
    )
    text = (tiny.root / "featurepipe.toml").read_text()
    text = text.replace(
        'notebooks = ["a_load", "b_stats"]', 'notebooks = ["c_report", "a_load", "b_stats"]'
    )
    (tiny.root / "featurepipe.toml").write_text(text)
    config = tiny.config
    assert [s.name for s in plan_steps(config, environ={})] == ["a_load", "b_stats", "c_report"]
    assert [s.name for s in plan_steps(config, start="b_stats", environ={})] == [
        "b_stats", "c_report"
    ]  # fmt: skip
    assert [s.name for s in plan_steps(config, end="b_stats", environ={})] == ["a_load", "b_stats"]
    with pytest.raises(FlowError, match=r"unknown step\(s\) \['d_deploy'\]"):
        plan_steps(config, start="d_deploy", environ={})


def test_an_upstream_cycle_is_a_config_error(tiny: Tiny) -> None:
    tiny.set_flow(
        "[flow.steps.a_load]\nupstream = ['b_stats']\n[flow.steps.b_stats]\nupstream = ['a_load']\n"
    )
    with pytest.raises(ConfigError, match="cycle"):
        plan_steps(tiny.config, environ={})
    tiny.set_flow("[flow.steps.a_load]\nupstream = ['z_missing']\n")
    with pytest.raises(
        ConfigError, match=r"flow: .*steps.a_load.upstream: 'z_missing' is not one of"
    ):
        _ = tiny.config
