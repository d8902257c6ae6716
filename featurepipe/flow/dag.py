"""The flow's steps in run order, their upstreams, and the parameters each one receives."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, FlowError

__all__ = [
    "ENV_PREFIX",
    "FLOW_PARAMETERS",
    "Step",
    "merge_parameters",
    "notebook_parameters",
    "plan_steps",
]

# Parameters every notebook receives from the flow; they never enter a step's cache key.
FLOW_PARAMETERS = ("project_dir", "run_dir", "mlflow_run_id", "load_id")
# FEATUREPIPE_PARAM_max_iter=50 in the environment sets the parameter max_iter.
ENV_PREFIX = "FEATUREPIPE_PARAM_"


@dataclass(frozen=True)
class Step:
    """One notebook of the flow, with the parameters it will run with.

    Attributes:
        name: notebook name without ``.ipynb``, e.g. ``03_train``.
        notebook: path of the source notebook.
        upstream: steps that run before it and whose outputs it reads.
        declared: the notebook's own parameters and their default values.
        parameters: the effective overrides (config, environment, command line).
        timeout: seconds allowed.
    """

    name: str
    notebook: Path
    upstream: tuple[str, ...]
    declared: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: float = 3600.0

    @property
    def effective(self) -> dict[str, Any]:
        """Every parameter the notebook will see, defaults included (flow parameters left out)."""
        merged = {**self.declared, **self.parameters}
        return {k: v for k, v in merged.items() if k not in FLOW_PARAMETERS}


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its cell tagged ``parameters``, with defaults.

    Reads the cell with ``ast`` rather than papermill, so planning a flow stays fast.
    A default that is not a literal is given as its source text.

    Raises:
        FlowError: the notebook cannot be read or has no ``parameters`` cell.
    """
    path = Path(path)
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as exc:
        raise FlowError(f"{path}: cannot read the notebook: {exc}") from exc
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise FlowError(
            f"{path}: no cell tagged 'parameters'; tag the cell that sets the notebook's "
            "parameters (View > Cell Toolbar > Tags in Jupyter)."
        )
    source = "".join(tagged[0]["source"])
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise FlowError(f"{path}: the parameters cell is not valid Python: {exc}") from exc
    declared: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        declared[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        declared[target.id] = ast.get_source_segment(source, node.value)
    return declared


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def merge_parameters(
    config: Config,
    step: str,
    declared: Mapping[str, Any],
    cli: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The overrides one step runs with; later sources win.

    Order: the notebook's defaults < ``[flow.parameters]`` < ``[flow.steps.NAME.parameters]``
    < ``FEATUREPIPE_PARAM_<name>`` in the environment < ``featurepipe run -p name=value``.
    Only parameters the notebook declares are passed to it.
    """
    env = os.environ if environ is None else environ
    from_env = {
        key[len(ENV_PREFIX) :]: _parse_env_value(value)
        for key, value in env.items()
        if key.startswith(ENV_PREFIX)
    }
    merged: dict[str, Any] = {}
    for layer in (config.flow.parameters, config.flow.step(step).parameters, from_env, cli):
        merged.update({k: v for k, v in layer.items() if k in declared})
    return {k: v for k, v in merged.items() if k not in FLOW_PARAMETERS}


def _upstreams(config: Config) -> dict[str, tuple[str, ...]]:
    names = config.flow.notebooks
    upstream: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        declared = config.flow.step(name).upstream
        if declared is not None:
            upstream[name] = tuple(declared)
        else:
            upstream[name] = (names[i - 1],) if i else ()
    return upstream


def _ordered(upstream: Mapping[str, Sequence[str]], names: Sequence[str]) -> list[str]:
    sorter = TopologicalSorter(upstream)
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ConfigError(
            f"featurepipe.toml: flow.steps upstreams form a cycle: {cycle}; remove one edge."
        ) from exc
    rank = {name: i for i, name in enumerate(names)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def _downstream_closure(upstream: Mapping[str, Sequence[str]], start: str) -> set[str]:
    found = {start}
    changed = True
    while changed:
        changed = False
        for name, ups in upstream.items():
            if name not in found and found.intersection(ups):
                found.add(name)
                changed = True
    return found


def _upstream_closure(upstream: Mapping[str, Sequence[str]], end: str) -> set[str]:
    found, todo = set(), [end]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(upstream[name])
    return found


def plan_steps(
    config: Config,
    *,
    parameters: Mapping[str, Any] | None = None,
    only: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Step]:
    """The steps to consider, in an order that respects every upstream.

    Args:
        config: the project configuration.
        parameters: ``-p`` parameters from the command line.
        only: consider only these steps (``--step``).
        start: ``--from``: this step and its downstream only.
        end: ``--to``: this step and its upstream only.
        environ: the environment (default ``os.environ``).

    Raises:
        FlowError: an unknown step or parameter, or a missing notebook.
        ConfigError: the upstreams form a cycle.
    """
    names = list(config.flow.notebooks)
    wanted = [*(only or []), *(s for s in (start, end) if s)]
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise FlowError(f"unknown step(s) {unknown}; the flow has {names}")
    upstream = _upstreams(config)
    order = _ordered(upstream, names)
    selected = set(only or names)
    if start:
        selected &= _downstream_closure(upstream, start)
    if end:
        selected &= _upstream_closure(upstream, end)

    notebooks_dir = config.path(config.flow.notebooks_dir)
    declared: dict[str, dict[str, Any]] = {}
    for name in order:
        path = notebooks_dir / f"{name}.ipynb"
        if not path.is_file():
            raise FlowError(f"step {name}: notebook {path} not found")
        declared[name] = notebook_parameters(path)
        missing = [p for p in FLOW_PARAMETERS if p not in declared[name]]
        if missing:
            raise FlowError(
                f"{path}: the parameters cell must declare {missing}; "
                "the flow passes them to every notebook."
            )
    given = {**(parameters or {})}
    known = {n for d in declared.values() for n in d} - set(FLOW_PARAMETERS)
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise FlowError(f"unknown parameter(s) {unknown}; the notebooks declare {sorted(known)}")
    checks = [(config.flow.parameters, "flow.parameters", known)] + [
        (config.flow.step(n).parameters, f"flow.steps.{n}.parameters", set(declared[n]))
        for n in order
    ]
    for layer, where, allowed in checks:
        bad = sorted(k for k in layer if k not in allowed)
        if bad:
            raise ConfigError(
                f"featurepipe.toml: {where}: unknown parameter(s) {bad}; "
                f"the notebook(s) declare {sorted(allowed - set(FLOW_PARAMETERS))}"
            )
    return [
        Step(
            name=name,
            notebook=notebooks_dir / f"{name}.ipynb",
            upstream=upstream[name],
            declared=declared[name],
            parameters=merge_parameters(config, name, declared[name], given, environ),
            timeout=config.flow.step(name).timeout or config.flow.timeout,
        )
        for name in order
        if name in selected
    ]
