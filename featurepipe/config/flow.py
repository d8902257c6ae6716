"""The notebook flow: which notebooks run, in what order, with what parameters."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .table import _Model


class StepConfig(_Model):
    """One notebook of the flow: what it depends on, reads and may take."""

    upstream: list[str] | None = Field(
        default=None,
        description="steps that must run first; default: the notebook before it in `notebooks`",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="parameters for this notebook only"
    )
    timeout: float | None = Field(
        default=None, gt=0, description="seconds before the step is stopped; default flow.timeout"
    )
    config: list[str] | None = Field(
        default=None,
        description="top-level featurepipe.toml sections the step reads (its cache key); "
        "default: all of them",
    )
    files: list[str] = Field(
        default_factory=list,
        description="project files (globs) the step reads, e.g. 'expectations/*.json'",
    )
    sources: list[str] | None = Field(
        default=None,
        description="sources the step extracts; default: all for a step without upstream, "
        "none otherwise",
    )


class FlowConfig(_Model):
    """The notebooks that make the flow, in order, and how they depend on each other."""

    notebooks: list[str] = Field(
        default_factory=lambda: ["01_ingest", "02_features", "03_train", "04_predict"]
    )
    notebooks_dir: str = "notebooks"
    runs_dir: str = "runs"
    timeout: float = Field(default=3600, gt=0, description="seconds allowed per step")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="parameters for every notebook that declares them"
    )
    steps: dict[str, StepConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_steps(self) -> FlowConfig:
        for name, step in self.steps.items():
            if name not in self.notebooks:
                raise ValueError(f"steps.{name}: not one of flow.notebooks {self.notebooks}")
            for up in step.upstream or []:
                if up not in self.notebooks:
                    raise ValueError(
                        f"steps.{name}.upstream: {up!r} is not one of flow.notebooks "
                        f"{self.notebooks}"
                    )
        return self

    def step(self, name: str) -> StepConfig:
        """The settings of one step (defaults when it has no ``[flow.steps.NAME]``)."""
        return self.steps.get(name, StepConfig())
