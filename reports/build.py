"""Building the report model (``reports.model.Report``): everything a report shows, computed once from a
results directory.

HTML, PDF, Markdown and LaTeX are renderings of this one object, so the formats can never disagree on
a number. All numbers come from ``robustbench_ofa.evaluation.outputs.compute`` over the SQLite store
(the same code that writes the CSV aggregates); nothing here is typed in by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from attacks.threat import THREATS
from reports.headline import Comparison
from reports.model import Report, Threat
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.store import STORE_FILE

ABLATION_FILE = "ablation.csv"


# -- loading -------------------------------------------------------------------------------------------
def open_store(results_dir: Path):
    """The results store of a directory, with one-line errors for the usual mistakes."""
    from robustbench_ofa.evaluation.store import ResultsStore

    if not results_dir.exists():
        raise RobustOFAError(f"{results_dir}: no such results directory")
    if not results_dir.is_dir():
        raise RobustOFAError(f"{results_dir}: not a directory (expected the --out folder of robust-ofa evaluate)")
    path = results_dir / STORE_FILE
    if not path.is_file():
        raise RobustOFAError(f"{results_dir}: no {STORE_FILE} here (expected the --out folder of robust-ofa evaluate)")
    return ResultsStore(path)


def run_is_complete(store, results_dir: Path) -> bool:
    """True when the evaluator marked the run finished (store meta ``complete``, or a written summary.json)."""
    flag = store.get_meta("complete")
    if flag is not None:
        return flag is True
    summary = results_dir / "summary.json"
    if summary.is_file():
        try:
            return json.loads(summary.read_text()).get("complete") is True
        except (OSError, ValueError):
            return False
    return False


def _variant_meta(store, run: dict) -> dict[str, dict]:
    """Per-variant metadata (method, trainable_params, hparams, sha256) from meta ``variants`` or run info."""
    raw = store.get_meta("variants")
    if raw is None:
        raw = run.get("variants")
    out: dict[str, dict] = {}
    if isinstance(raw, dict):
        for name, info in raw.items():
            if isinstance(info, dict):
                out[str(name)] = {"name": str(name), **info}
    elif isinstance(raw, list):
        for info in raw:
            if isinstance(info, dict) and info.get("name") is not None:
                out[str(info["name"])] = dict(info)
    return out


def _threats(samples: pd.DataFrame, worst: pd.DataFrame, task: str) -> list[Threat]:
    out = [Threat("clean", "", 0.0)]
    if not len(worst):
        return out
    s = samples[samples.task == task]
    w = worst[worst.task == task]
    for norm in THREATS:
        attacks = tuple(dict.fromkeys(s[s.norm == norm].attack))
        levels = w[w.norm == norm][["eps_label", "eps"]].drop_duplicates().sort_values("eps")
        out += [Threat(norm, str(r.eps_label), float(r.eps), attacks) for r in levels.itertuples()]
    return out


def choose_reference(variants: list[str], meta: dict[str, dict], wanted: str | None) -> str | None:
    """The variant every other is compared with: ``wanted``, else the finetuned one, else the first."""
    if wanted:
        if wanted not in variants:
            raise RobustOFAError(f"--reference: no variant {wanted!r} in these results (have: {', '.join(variants)})")
        return wanted
    if not variants:
        return None
    for v in variants:
        if str(meta.get(v, {}).get("method", "")).lower() == "finetune":
            return v
    for v in variants:
        if "finetune" in v.lower():
            return v
    return variants[0]


def _comparisons(paired: pd.DataFrame, task: str, threats: list[Threat], variants: list[str],
                 reference: str | None) -> list[Comparison]:
    """Every variant against the reference, per threat, in variant then threat order."""
    if reference is None or not len(paired):
        return []
    p = paired[paired.task == task]
    out = []
    for v in variants:
        if v == reference:
            continue
        pair = p[((p.variant_a == v) & (p.variant_b == reference)) | ((p.variant_a == reference) & (p.variant_b == v))]
        for t in threats:
            rows = pair[(pair.norm == t.norm) & (pair.eps_label.fillna("") == t.eps_label)]
            if len(rows):
                out.append(Comparison.from_paired(rows.iloc[0].to_dict(), v, "clean" if t.norm == "clean" else t.phrase))
    return out


def _lead_sentences(comps: list[Comparison], threats: list[Threat]) -> list[Comparison]:
    """Per threat, the comparison of the most accurate non-reference variant with the reference."""
    out = []
    for t in threats:
        phrase = "clean" if t.norm == "clean" else t.phrase
        cands = [c for c in comps if c.threat == phrase]
        if cands:
            out.append(max(cands, key=lambda c: (c.acc_subject, c.diff)))
    return out


def load_ablation(results_dir: Path, ablation: str | Path | None) -> pd.DataFrame | None:
    """``--ablation FILE``, else ``ablation.csv`` in the results directory, else None."""
    path = Path(ablation) if ablation else results_dir / ABLATION_FILE
    if not path.is_file():
        if ablation:
            raise RobustOFAError(f"--ablation: no such file {path}")
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RobustOFAError(f"{path}: not a readable CSV ({exc})") from None
    return df if len(df) else None


def load_regression(results_dir: Path) -> dict | None:
    """The run's ``regression.json`` (written by ``robust-ofa regress``), or None if it was never gated."""
    from robustbench_ofa.regress import RECORD

    path = results_dir / RECORD
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RobustOFAError(f"{path}: not a readable regression record ({exc}); rerun robust-ofa regress") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise RobustOFAError(f"{path}: field 'rows': expected a list of gated numbers; rerun robust-ofa regress")
    return data


def load_report(results_dir: str | Path, allow_incomplete: bool = False, reference: str | None = None,
                ablation: str | Path | None = None, with_figures: bool = True) -> Report:
    """Read a results directory and build the full report model (tables, sentences, plots, examples)."""
    from robustbench_ofa.evaluation.outputs import compute

    results_dir = Path(results_dir)
    store = open_store(results_dir)
    try:
        complete = run_is_complete(store, results_dir)
        if not complete and not allow_incomplete:
            raise RobustOFAError(f"{results_dir}: the run is incomplete (robust-ofa evaluate has not finished); "
                                 "rerun the same evaluate command to finish it, or pass --allow-incomplete")
        with warnings.catch_warnings():  # pandas' lexsort PerformanceWarning from the paired tests: noise here
            warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
            tables = compute(store)
        if not len(tables["clean"]):
            raise RobustOFAError(f"{results_dir}: the results store holds no results yet")
        settings = store.settings()
        run = store.get_meta("run") or {}
        if not isinstance(run, dict):
            run = {"run": run}
        meta = _variant_meta(store, run)
        examples_df = store.frame("examples")
        samples_df = store.frame("samples")
    finally:
        store.close()

    clean, worst, paired = tables["clean"], tables["worst_case"], tables["paired"]
    variants = list(dict.fromkeys(clean.variant))
    tasks = list(dict.fromkeys(clean.task))
    ref = choose_reference(variants, meta, reference)
    threats = {t: _threats(tables["samples"], worst, t) for t in tasks}
    comparisons = {t: _comparisons(paired, t, threats[t], variants, ref) for t in tasks}
    report = Report(
        title=f"Robustness report: {results_dir.resolve().name}", results_dir=results_dir,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), complete=complete,
        tasks=tasks, variants=variants, variant_meta=meta, reference=ref, threats=threats,
        comparisons=comparisons, tables=tables, settings=settings, run=run, flags=tables["flags"],
        headline={t: _lead_sentences(comparisons[t], threats[t]) for t in tasks},
        ablation=load_ablation(results_dir, ablation),
    )
    from reports import examples as ex
    from reports import tables as tb

    report.result_tables = tb.result_tables(report)
    from reports import frontier

    if frontier.has_robust_variants(report):
        report.result_tables.append(frontier.frontier_table(report))
        report.frontier = frontier.frontier_sentences(report) + frontier.survival_sentences(report)
    report.headline_tables = {t: tb.headline_table(report, t) for t in tasks if comparisons[t]}
    report.variant_table = tb.variant_table(report)
    from robustbench_ofa.evaluation.outputs import unanswerable_checks

    # unanswerable samples: said next to the numbers they lower
    report.notes += [f"{r.variant}, {r.task}: {r.detail}." for r in unanswerable_checks(tables.get("checks")).itertuples()]
    report.regression = load_regression(results_dir)
    report.regression_tables = tb.regression_tables(report)
    report.metadata = metadata_rows(report)
    report.examples = ex.image_examples(examples_df, samples_df, tables["samples"], variants)
    # the seeded sample of successes of every text attack first, then the example samples' texts not already shown
    won = ex.success_examples(tables.get("text_successes"))
    shown = {(e.variant, e.task, e.attack, e.eps_label, e.uid) for e in won}
    report.text_examples = won + [e for e in ex.text_examples(examples_df, samples_df, tables["samples"], variants)
                                  if (e.variant, e.task, e.attack, e.eps_label, e.uid) not in shown]
    if with_figures:
        from reports import plots

        report.figures, notes = plots.all_figures(report)
        report.notes += notes
    return report


# -- run metadata ----------------------------------------------------------------------------------------
def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _fmt_seconds(value: Any) -> str:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(s):
        return "n/a"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min ({s:.0f} s)"


def metadata_rows(report: Report) -> list[tuple[str, str]]:
    """Key/value rows: command, device, durations, versions, seeds, then every stored setting."""
    rows: list[tuple[str, str]] = [("results directory", str(report.results_dir.resolve())),
                                   ("report generated", report.generated),
                                   ("run complete", "yes" if report.complete else "NO (incomplete run)")]
    run = dict(report.run)
    for key in ("command", "device"):
        if key in run:
            rows.append((key, _fmt_value(run.pop(key))))
    for key in ("seconds", "duration", "duration_s", "wall_seconds"):
        if key in run:
            rows.append(("duration", _fmt_seconds(run.pop(key))))
    samples = report.tables["samples"]
    if len(samples):
        rows.append(("attack time (sum over samples)", _fmt_seconds(float(samples.seconds.sum()))))
    run.pop("variants", None)
    for key in sorted(run):
        value = run[key]
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            rows += [(f"{key}: {k}", _fmt_value(v)) for k, v in sorted(value.items())]
        else:
            rows.append((key, _fmt_value(value)))
    for key in sorted(report.settings):
        rows.append((f"setting: {key}", _fmt_value(report.settings[key])))
    return rows
