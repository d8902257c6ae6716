"""Executed notebooks as HTML: what the flow logs to MLflow beside the ``.ipynb``."""

from __future__ import annotations

import base64
import io
import logging

import matplotlib
import nbformat

from featurepipe.flow.execute import export_html

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
