"""Executed notebooks as HTML: what the flow logs to MLflow beside the ``.ipynb``."""

from __future__ import annotations

import base64
import io
import logging

import matplotlib
import nbformat

from featurepipe.flow.execute import execute_notebook, export_html

from .conftest import write_notebook

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def test_html_keeps_the_plots_without_a_warning_per_image(tmp_path, caplog) -> None:
    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([0, 1], [0, 1])
    png = io.BytesIO()
    figure.savefig(png, format="png")
    plt.close(figure)
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(png.getvalue()).decode()}
        )
    ]
    notebook = tmp_path / "03_train.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), notebook)
    with caplog.at_level(logging.INFO):
        html = export_html(notebook)
    assert html == notebook.with_suffix(".html")
    assert html.read_text(encoding="utf-8").count("<img") == 1
    # nbconvert's "Alternative text is missing on 1 image(s)" ended every flow run's output
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], noisy


def test_a_notebook_that_imports_mlflow_shows_no_tqdm_widget_warning(tmp_path) -> None:
    # a real kernel (IPython, no ipywidgets), where tqdm.auto warns "IProgress not found"
    source, target = tmp_path / "step.ipynb", tmp_path / "out.ipynb"
    write_notebook(source, 'note = ""\n', "import featurepipe as fp\nimport mlflow\n")
    execute_notebook("step", "r1", source, target, {}, cwd=tmp_path, timeout=120)
    streams = [
        "".join(output.get("text", ""))
        for cell in nbformat.read(target, as_version=4).cells
        for output in cell.get("outputs", [])
    ]
    assert not [text for text in streams if "IProgress" in text], streams
