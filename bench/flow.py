"""Benchmark: the notebook flow against a plain Python script doing the same work.

``make bench`` runs this file. Part 1 (``--reruns`` skips it) times each step. Each
round copies the project (``featurepipe.toml``, ``notebooks/``, ``expectations/``; no
warehouse, runs, MLflow store or models) into two fresh temporary folders, then in this
one process:

1. runs ``bench/plain_flow.py`` (the notebooks' code as plain functions) in one, and
2. runs the real flow, ``featurepipe.run_flow``, in the other,

each against its folder's own warehouse and sqlite MLflow store (what both write to
stderr goes to a log, shown only if a round fails). It prints the wall
time of every step and of the whole flow (start-up included) for both, and their
ratio. With ``--repeat N`` every figure is the median of N rounds; only the first
round runs the plain script with cold imports, so medians of several rounds lean
towards a warm plain script.

Part 2 times what a user types, each as a fresh process in one project copy: a cold
``featurepipe run``, a rerun with nothing changed (the cache's goal: at most 3 s), and a
rerun after one training parameter changed; beside each, the plain script run the same
way (it has no cache, so it redoes everything). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from plain_flow import STEPS, run_plain
from rich.console import Console
from rich.table import Table

import featurepipe as fp
from featurepipe.flow import stderr_to

PROJECT_DIR = Path(__file__).resolve().parent.parent
# What a project is made of; everything else in it is what a run writes.
PROJECT_FILES = ("featurepipe.toml", "notebooks", "expectations")
WHOLE = "whole flow"

NOTE = (
    "ratio = flow / plain script, measured in the same run; above 1 is the flow's overhead: "
    "a kernel start per notebook, the imports each kernel repeats, and notebook I/O "
    "(papermill reading, writing and logging every executed notebook)."
)


@dataclass
class Round:
    """Wall seconds of one round: each step and the whole flow, for both runners."""

    flow: dict[str, float]
    plain: dict[str, float]


def copy_project(source: Path, target: Path) -> Path:
    """Copy the project's own files (not what runs wrote) into a new folder ``target``."""
    target.mkdir(parents=True)
    for name in PROJECT_FILES:
        path = source / name
        if path.is_dir():
            ignore = shutil.ignore_patterns(".ipynb_checkpoints")
            shutil.copytree(path, target / name, ignore=ignore)
        else:
            shutil.copy2(path, target / name)
    return target


@contextlib.contextmanager
def isolated(temp: Path) -> Iterator[None]:
    """Each project uses its own ``sqlite:///mlflow.db``; temporary files go to ``temp``.

    ``MLFLOW_TRACKING_URI`` is unset, since it would win over ``featurepipe.toml``;
    ``TMPDIR`` (inherited by the kernels) keeps downloaded models out of ``/tmp``.
    """
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "TMPDIR")}
    saved_tempdir = tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(temp)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def time_flow(project: Path) -> dict[str, float]:
    """Run the notebook flow; each step's ``StepResult.seconds`` and the total wall time."""
    started = time.perf_counter()
    result = fp.run_flow(fp.load_config(project))
    total = time.perf_counter() - started
    return {**{s.name: s.seconds for s in result.steps}, WHOLE: total}


def time_plain(project: Path) -> dict[str, float]:
    """Run the plain script in this process; each step and the total wall time."""
    started = time.perf_counter()
    steps = run_plain(project)
    total = time.perf_counter() - started
    return {**steps, WHOLE: total}


def run_round(source: Path, console: Console) -> Round:
    """One round: the plain script, then the flow, each in a fresh copy of the project."""
    with tempfile.TemporaryDirectory(
        prefix="featurepipe-bench-", ignore_cleanup_errors=True
    ) as tmp:
        root = Path(tmp)
        (root / "tmp").mkdir()
        log = root / "stderr.log"
        try:
            with isolated(root / "tmp"), stderr_to(log):
                # The plain script goes first, so it pays this process's cold imports
                # (polars, scikit-learn, MLflow, ...); the flow pays them in every kernel.
                console.log("plain script ...")
                plain = time_plain(copy_project(source, root / "plain"))
                console.log("notebook flow ...")
                flow = time_flow(copy_project(source, root / "flow"))
        except BaseException:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(["stderr of the failed round (last lines):", *tail]), file=sys.stderr)
            raise
    return Round(flow=flow, plain=plain)


def median(rounds: Sequence[Round], runner: str, row: str) -> float:
    """The median over rounds of one runner's (``flow`` or ``plain``) figure for ``row``."""
    return statistics.median(getattr(r, runner)[row] for r in rounds)


def render(rounds: Sequence[Round]) -> Table:
    """The table: step | flow (s) | plain script (s) | ratio flow/plain."""
    n = len(rounds)
    title = "featurepipe flow vs plain script" + (f" (median of {n} rounds)" if n > 1 else "")
    table = Table(title=title)
    table.add_column("step")
    table.add_column("flow (s)", justify="right")
    table.add_column("plain script (s)", justify="right")
    table.add_column("ratio flow/plain", justify="right")
    for row in (*STEPS, WHOLE):
        flow, plain = median(rounds, "flow", row), median(rounds, "plain", row)
        table.add_row(
            row,
            f"{flow:.2f}",
            f"{plain:.2f}",
            f"{flow / plain:.2f}×",
            style="bold" if row == WHOLE else None,
            end_section=row == STEPS[-1],
        )
    return table


RERUNS = (
    ("cold `featurepipe run`", []),
    ("rerun, nothing changed", []),
    ("rerun, -p max_iter=50", ["-p", "max_iter=50"]),
)


def _timed(command: Sequence[str], cwd: Path, log: Path) -> float:
    started = time.perf_counter()
    with log.open("ab") as err:
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=err)
    return time.perf_counter() - started


def time_reruns(source: Path, console: Console) -> Table:
    """Part 2: the CLI cold, with nothing changed and after one parameter, vs the plain script."""
    bin_dir = Path(sys.executable).parent
    featurepipe = [str(bin_dir / "featurepipe"), "run"]
    plain = [sys.executable, str(Path(__file__).with_name("plain_flow.py")), "."]
    table = Table(title="what a user types, each a fresh process")
    for column in ("command", "steps run", "flow (s)", "plain script (s)", "ratio flow/plain"):
        table.add_column(column, justify="left" if column == "command" else "right")
    with tempfile.TemporaryDirectory(
        prefix="featurepipe-bench-", ignore_cleanup_errors=True
    ) as tmp:
        root = Path(tmp)
        (root / "tmp").mkdir()
        flow_dir = copy_project(source, root / "flow")
        plain_dir = copy_project(source, root / "plain")
        log = root / "stderr.log"
        try:
            with isolated(root / "tmp"):
                for label, extra in RERUNS:
                    console.log(f"{label} ...")
                    flow_s = _timed([*featurepipe, *extra], flow_dir, log)
                    plain_s = _timed(plain, plain_dir, log)
                    newest = max(p for p in (flow_dir / "runs").iterdir() if p.is_dir())
                    ran = len(list(newest.glob("*.ipynb")))
                    table.add_row(
                        label,
                        f"{ran} of {len(STEPS)}",
                        f"{flow_s:.2f}",
                        f"{plain_s:.2f}",
                        f"{flow_s / plain_s:.2f}×",
                    )
        except subprocess.CalledProcessError:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(["stderr of the failed command (last lines):", *tail]), file=sys.stderr)
            raise
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="rounds to run; report medians"
    )
    parser.add_argument(
        "--project", type=Path, default=PROJECT_DIR, help="project to copy (default: this one)"
    )
    parser.add_argument("--reruns", action="store_true", help="only part 2: the CLI reruns")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    console = Console()
    if args.reruns:
        console.print(time_reruns(args.project.resolve(), console))
        return
    rounds = []
    for n in range(1, args.repeat + 1):
        console.log(f"round {n}/{args.repeat}")
        rounds.append(run_round(args.project.resolve(), console))
    console.print(render(rounds))
    console.print(NOTE)
    if len(rounds) > 1:
        ratios = ", ".join(f"{r.flow[WHOLE] / r.plain[WHOLE]:.2f}×" for r in rounds)
        console.print(
            f"whole flow, round by round: {ratios}. Round 1 runs the plain script with cold "
            "imports; later rounds find its modules already imported in this process."
        )
    console.print(
        f"[dim]{os.cpu_count()} cores, Python {platform.python_version()}, {sys.platform}; "
        "the plain script runs in this process, first in each round.[/dim]"
    )
    console.print(time_reruns(args.project.resolve(), console))


if __name__ == "__main__":
    main()
