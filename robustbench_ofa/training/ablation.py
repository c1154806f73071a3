"""Ablation grids: train every combination of hyper-parameter lists and write one comparison table.

``--prompt-length 10,16,32,64 --prompt-depth encoder,decoder,both --reparam on,off`` is 24 runs; each
gets its own folder (``runs/<run id>/``, resumable, skipped when already finished) and one row of
``ablation.csv`` / ``ablation.json``: method, hyper-parameters, learning rate, trainable parameters,
clean metrics per task, training time. The table is rewritten after every run, so a grid interrupted
half-way still leaves a valid table of the finished runs.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.tuning.base import METHODS, parse_number

RESULT_FILE = "result.json"
TABLE_CSV = "ablation.csv"
TABLE_JSON = "ablation.json"
#: Grid axes that are training settings rather than method hyper-parameters.
TRAIN_AXES = ("lr",)


def parse_value(method: str, key: str, text: str) -> Any:
    """Convert one command-line value to the type of ``method``'s hyper-parameter ``key``.

    Training axes (``lr``) are numbers; a method's hyper-parameters are parsed by the method
    (``TuningMethod.parse_hparam``: on/off booleans, ``none``, ``+``-separated lists).
    """
    if key in TRAIN_AXES:
        return parse_number(float, key, text)
    return METHODS.get(method).parse_hparam(key, text)


def parse_grid(method: str, specs: Mapping[str, str]) -> dict[str, list[Any]]:
    """{"length": "10,16"} -> {"length": [10, 16]} with each value typed (see ``parse_value``)."""
    grid: dict[str, list[Any]] = {}
    for key, text in specs.items():
        items = [t for t in str(text).split(",") if t.strip()]
        if not items:
            raise RobustOFAError(f"hyper-parameter '{key}': empty value list")
        values = [parse_value(method, key, t) for t in items]
        if len({json.dumps(v) for v in values}) != len(values):
            raise RobustOFAError(f"hyper-parameter '{key}': duplicate values in '{text}'")
        grid[key] = values
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order the axes and values were given (the last axis varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def run_id(point: Mapping[str, Any]) -> str:
    """A folder-safe name for one grid point, e.g. ``length-16_depth-both_reparam-on``."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, list):
            return "+".join(map(str, v))
        return str(v)

    text = "_".join(f"{k}-{fmt(v)}" for k, v in point.items()) or "default"
    return re.sub(r"[^A-Za-z0-9.+_-]", "-", text)


def metric_columns(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flatten {task: {metric: v}} to {"task/metric": v} (``n`` kept as "task/n")."""
    return {f"{task}/{name}": value for task, m in metrics.items() for name, value in m.items()}


def write_table(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """``ablation.csv`` (one row per run, union of columns) and ``ablation.json`` (the rows as given)."""
    out = Path(out_dir)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    csv_path, json_path = out / TABLE_CSV, out / TABLE_JSON
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(json_path, json.dumps(list(rows), indent=2, sort_keys=False) + "\n")
    return csv_path, json_path


#: Runs one grid point: (run folder, method hyper-parameters, training config) -> result row fields.
RunFn = Callable[[Path, dict[str, Any], TrainConfig], dict[str, Any]]


def run_grid(method: str, base_hparams: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], config: TrainConfig,
             out_dir: str | Path, run_one: RunFn, progress: bool = True) -> list[dict[str, Any]]:
    """Run every grid point with ``run_one`` (skipping finished ones) and write the table after each.

    ``run_one`` trains and evaluates one model and returns at least ``trainable_params`` and
    ``metrics`` ({task: {metric: value}}), optionally the method's full ``hparams`` (defaults included);
    the row adds the run id, method, hyper-parameters and learning rate.
    """
    from robustbench_ofa.training.parallel import current

    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    points = expand_grid(grid)
    main = current().is_main
    for i, point in enumerate(points, start=1):
        rid = run_id(point)
        run_dir = out / "runs" / rid
        done = run_dir / RESULT_FILE
        if done.is_file():
            row = json.loads(done.read_text())
        else:
            if progress and main:
                import sys

                print(f"robust-ofa: ablation run {i}/{len(points)}: {rid}", file=sys.stderr, flush=True)
            hparams = {**base_hparams, **{k: v for k, v in point.items() if k not in TRAIN_AXES}}
            cfg = config.replace(**{k: v for k, v in point.items() if k in TRAIN_AXES})
            result = run_one(run_dir, hparams, cfg)
            full = result.get("hparams", hparams)  # every hyper-parameter, defaults included
            row = {"run": rid, "method": method, **{k: full[k] for k in sorted(full)}, "lr": cfg.lr,
                   "trainable_params": result["trainable_params"], **metric_columns(result["metrics"]),
                   "train_seconds": result.get("train_seconds")}
            if main:  # under torchrun every rank trains the point; rank 0 alone writes
                atomic_write_text(done, json.dumps(row, indent=2) + "\n")
        rows.append(row)
        if main:
            write_table(rows, out)
    return rows
