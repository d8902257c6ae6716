"""Execute one step: its notebook through papermill in a fresh kernel, with a timeout.

papermill writes the executed notebook after every cell and, on a failed cell, with an
error banner at the top; this module turns what went wrong into a typed ``StepFailed``
(a failed cell, a shut validation gate, a timeout, a dead kernel) and adds a banner
for the two cases papermill does not mark itself. Only this module imports papermill
(1.8 s), and only when a step actually runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import GateFailed, KernelDied, StepFailed, StepTimedOut

__all__ = ["GATE_ERRORS", "execute_notebook", "export_html", "stderr_to"]

# Exceptions raised inside a notebook that mean "a validation gate shut" (exit code 3).
GATE_ERRORS = ("ValidationFailed", "GateFailed")


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr, and so its kernels' logs and warnings, to a file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _Watchdog:
    """Kills a step's kernel when the step runs past its timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.managers: list[Any] = []
        self.fired = threading.Event()
        self._timer = threading.Timer(timeout, self._kill)
        self._timer.daemon = True

    def manager_class(self) -> type:
        from jupyter_client.manager import AsyncKernelManager

        managers = self.managers

        class WatchedKernelManager(AsyncKernelManager):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                managers.append(self)

        return WatchedKernelManager

    def _kill(self) -> None:
        self.fired.set()
        for manager in self.managers:
            process = getattr(manager.provisioner, "process", None)
            if process is not None and process.poll() is None:
                process.kill()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _last_started_cell(notebook: Path) -> int | None:
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    started = [
        i
        for i, c in enumerate(cells)
        if c.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    return started[-1] if started else None


def _add_banner(notebook: Path, text: str) -> None:
    """Put a red banner first in a saved notebook, as papermill does for a failed cell."""
    import nbformat

    if not notebook.is_file():
        return
    nb = nbformat.read(str(notebook), as_version=4)
    html = f'<span style="color:red; font-size:2em;">{text}</span>'
    banner = nbformat.v4.new_markdown_cell(html, metadata={"tags": ["featurepipe-error"]})
    nb.cells.insert(0, banner)
    nbformat.write(nb, str(notebook))


def execute_notebook(
    step: str,
    run_id: str,
    source: Path,
    target: Path,
    parameters: Mapping[str, Any],
    *,
    cwd: Path,
    timeout: float,
) -> None:
    """Run ``source`` with ``parameters`` in a fresh kernel, writing it to ``target``.

    Raises:
        GateFailed: a cell raised ``ValidationFailed``.
        StepFailed: a cell raised any other exception.
        StepTimedOut: the step ran longer than ``timeout`` seconds; its kernel was killed.
        KernelDied: the kernel died while running a cell.
    """
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    where = {"step": step, "run_id": run_id, "notebook": str(target)}
    with _Watchdog(timeout) as watchdog:
        try:
            papermill.execute_notebook(
                str(source),
                str(target),
                parameters=dict(parameters),
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                kernel_manager_class=watchdog.manager_class(),
                shutdown_kernel="immediate",  # the results are committed; saves ~1 s a step
            )
        except PapermillExecutionError as exc:
            error = GateFailed if exc.ename in GATE_ERRORS else StepFailed
            raise error(
                **where, cell_index=exc.cell_index, error_name=exc.ename, error_value=exc.evalue
            ) from exc
        except (DeadKernelError, RuntimeError) as exc:
            if not isinstance(exc, DeadKernelError) and "Kernel died" not in str(exc):
                raise
            cell = _last_started_cell(target)
            if watchdog.fired.is_set():
                _add_banner(target, f"Stopped: the step ran past its timeout of {timeout:g} s.")
                raise StepTimedOut(
                    **where,
                    cell_index=cell,
                    error_name="Timeout",
                    error_value=f"the step ran longer than {timeout:g} s and was stopped",
                ) from exc
            _add_banner(target, "The kernel died while running this notebook.")
            raise KernelDied(
                **where, cell_index=cell, error_name="DeadKernelError", error_value=str(exc)
            ) from exc


# nbconvert warns "Alternative text is missing on N image(s)" for every plot a notebook shows,
# at the end of each flow run; its exporter logs here, where only errors are reported.
_HTML_LOG = logging.getLogger("featurepipe.flow.html")
_HTML_LOG.setLevel(logging.ERROR)


def export_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook (nbconvert's lab template)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(log=_HTML_LOG).from_filename(str(notebook))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target
