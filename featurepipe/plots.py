"""Figures of a trained model on its test rows: curves, calibration, confusion, importance.

matplotlib is imported when a figure is drawn; figures are built with the object API
(no pyplot state), so they can be saved, logged or shown in a notebook alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .train import TrainedModel

__all__ = ["plot_model"]


def _figure(width: float = 5.5, height: float = 4.5) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def _importance(model: TrainedModel, sample: int, seed: int) -> Figure:
    from sklearn.inspection import permutation_importance

    from .features import model_inputs

    rows = np.sort(np.random.default_rng(seed).permutation(model.test_frame.height)[:sample])
    inputs = model_inputs(model.test_frame[rows], model.columns)
    y = model.test_scores[model.target].to_numpy()[rows]
    scoring = "roc_auc" if model.task == "classification" else "neg_root_mean_squared_error"
    result = permutation_importance(
        model.pipeline, inputs, y, scoring=scoring, n_repeats=3, random_state=seed
    )
    order = np.argsort(result.importances_mean)[-15:]
    figure, ax = _figure(6.5, 5.5)
    ax.barh(
        [model.columns[i] for i in order],
        result.importances_mean[order],
        xerr=result.importances_std[order],
    )
    ax.set_xlabel(f"drop in {scoring} when the column is shuffled")
    ax.set_title(f"permutation importance ({len(rows)} test rows)")
    return figure


def plot_model(
    model: TrainedModel, *, importance_rows: int = 5000, seed: int = 0
) -> dict[str, Figure]:
    """Draw the test-set figures of a trained model.

    Classification: ROC curve, precision-recall curve, calibration, confusion matrix at
    the model's threshold and permutation importance. Regression: predicted against
    actual, residuals and permutation importance. The dummy baseline is drawn where it
    has a meaning (chance line, positive rate).

    Args:
        model: the trained model.
        importance_rows: test rows sampled for permutation importance (it refits nothing
            but predicts ``3 × columns`` times).
        seed: seed of that sample and of the shuffles.

    Returns:
        File name (``roc.png`` …) to figure.
    """
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import (
        ConfusionMatrixDisplay,
        PrecisionRecallDisplay,
        PredictionErrorDisplay,
        RocCurveDisplay,
    )

    y = model.test_scores[model.target].to_numpy()
    figures: dict[str, Figure] = {}
    if model.task == "classification":
        p = model.test_scores["probability"].to_numpy()
        figure, ax = _figure()
        RocCurveDisplay.from_predictions(y, p, ax=ax, plot_chance_level=True)
        ax.set_title(f"ROC, test rows (AUC {model.metrics['roc_auc']:.3f})")
        figures["roc.png"] = figure
        figure, ax = _figure()
        PrecisionRecallDisplay.from_predictions(y, p, ax=ax, plot_chance_level=True)
        ax.set_title(f"precision-recall (AP {model.metrics['pr_auc']:.3f})")
        figures["precision_recall.png"] = figure
        figure, ax = _figure()
        CalibrationDisplay.from_predictions(y, p, n_bins=15, strategy="quantile", ax=ax)
        ax.set_title(f"calibration (Brier {model.metrics['brier']:.3f})")
        figures["calibration.png"] = figure
        figure, ax = _figure()
        ConfusionMatrixDisplay.from_predictions(y, (p >= model.threshold).astype(int), ax=ax)
        ax.set_title(f"confusion matrix at threshold {model.threshold}")
        figures["confusion_matrix.png"] = figure
    else:
        predicted = model.test_scores["prediction"].to_numpy()
        for kind, name in (("actual_vs_predicted", "actual_vs_predicted.png"),
                           ("residual_vs_predicted", "residuals.png")):  # fmt: skip
            figure, ax = _figure()
            PredictionErrorDisplay.from_predictions(y, predicted, kind=kind, ax=ax)
            ax.set_title(f"{kind.replace('_', ' ')} (RMSE {model.metrics['rmse']:.3g})")
            figures[name] = figure
    figures["permutation_importance.png"] = _importance(model, importance_rows, seed)
    return figures
