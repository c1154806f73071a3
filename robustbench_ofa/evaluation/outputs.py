"""Writing a finished run's aggregates (JSON + CSV) and the terminal summary.

Aggregates are written only once every unit of work is in the store, each file through a temporary
name and a rename; at the start of a run any aggregates left from an unfinished one are removed, so a
directory never shows partial numbers as if they were complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from robustbench_ofa.evaluation import aggregate as agg
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.io import atomic_write_text

AGGREGATE_FILES = ("summary.json", "clean.csv", "attacks.csv", "worst_case.csv", "paired.csv", "flags.csv",
                   "transfer.csv", "text_attacks.csv", "text_successes.csv", "breakdown.csv", "checks.csv",
                   "samples.csv",
                   "regression.json")  # (written by `robust-ofa regress`: stale once the run changes)


def clear_aggregates(out: Path) -> None:
    for name in AGGREGATE_FILES:
        (out / name).unlink(missing_ok=True)


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records")) if len(df) else []


def compute(store: ResultsStore) -> dict[str, pd.DataFrame]:
    res, clean = store.frame("results"), store.frame("clean")
    checks, transfer, samples = store.frame("checks"), store.frame("transfer"), store.frame("samples")
    return {
        "clean": agg.clean_table(clean) if len(clean) else pd.DataFrame(),
        "attacks": agg.attack_table(res) if len(res) else pd.DataFrame(),
        "worst_case": agg.worst_case_table(res) if len(res) else pd.DataFrame(),
        "paired": agg.paired_tests(res, clean) if len(clean) else pd.DataFrame(),
        "flags": agg.explain_flags(agg.validity_flags(res, clean, checks, transfer), res, samples),
        "transfer": agg.transfer_matrix(transfer) if len(transfer) else pd.DataFrame(),
        "text_attacks": agg.text_attack_table(res) if len(res) else pd.DataFrame(),
        "text_successes": agg.text_successes(res, samples),
        "breakdown": agg.breakdown_table(res, clean, samples),
        # the raw checks behind the flags (gradient norms, large-eps counts, stochastic modules for EOT, ...)
        "checks": checks,
        "samples": res,
    }


def write_aggregates(store: ResultsStore, out: Path, run_info: dict) -> dict[str, pd.DataFrame]:
    tables = compute(store)
    for name, df in tables.items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    summary = {"complete": True, "settings": store.settings(), "run": run_info,
               **{k: _records(v) for k, v in tables.items() if k != "samples"}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=True, default=str))
    return tables


def _pct(x: float) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


def _num(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def format_summary(tables: dict[str, pd.DataFrame]) -> str:
    """Clean and worst-case robust accuracy per variant, task and eps, with 95% Wilson intervals."""
    lines = []
    clean, worst = tables["clean"], tables["worst_case"]
    if not len(clean):
        return "no results"
    cidx = clean.set_index(["variant", "task"])
    head = f"{'task':10} {'variant':14} {'clean % [95% CI]':22} {'threat':14} {'robust % [95% CI]':22}"
    lines += [head, "-" * len(head)]
    for _, w in worst.iterrows() if len(worst) else []:
        c = cidx.loc[(w.variant, w.task)]
        lines.append(f"{w.task:10} {w.variant:14} {_pct(c.acc)} [{_pct(c.ci_low)},{_pct(c.ci_high)}]   "
                     f"{w.norm + ' ' + w.eps_label:14} {_pct(w.robust_acc)} [{_pct(w.robust_ci_low)},"
                     f"{_pct(w.robust_ci_high)}]")
    lines += _score_lines(clean, worst)
    lines += _decided_lines(tables.get("breakdown"))
    text = tables.get("text_attacks")
    if text is not None and len(text):
        lines.append("")
        lines.append("TEXT ATTACKS (TextAttack summary: successful/failed/skipped[/cascaded], accuracy %, "
                     "success %, perturbed words %, queries)")
        notes = []
        for _, t in text.iterrows():
            rejected = rejected_by_check(t)
            lines.append(f"  {t.task:10} {t.variant:14} {t.attack + ' ' + t.eps_label:28} "
                         f"{t.successful}/{t.failed}/{t.skipped}/{t.cascaded}  orig {_pct(t.original_acc)}  "
                         f"under attack {_pct(t.acc_under_attack)}  success {_pct(t.attack_success_rate)}  "
                         f"words {_num(t.avg_perturbed_word_pct)}  queries {_num(t.avg_queries)}"
                         + (f"  rejected {rejected}" if rejected else ""))
            note = no_valid_edit_note(t)
            if note:
                notes.append(f"  ! {t.task} {t.variant} {t.attack}: {note}")
        lines += notes
        lines += _success_lines(tables.get("text_successes"))
    lines += unanswerable_lines(tables.get("checks"))
    flags = tables["flags"]
    if len(flags):
        lines.append("")
        lines.append(f"VALIDITY FLAGS ({len(flags)}):")
        for _, f in flags.iterrows():
            where = " ".join(x for x in (f.variant, f.task, f.norm, f.eps_label) if x)
            lines.append(f"  ! {where}: {f.flag}: {f.detail}")
    return "\n".join(lines)


#: Successful adversarial texts the terminal summary prints (the report shows every drawn one).
SUMMARY_SUCCESSES = 3


def _success_lines(won: pd.DataFrame | None) -> list[str]:
    """A few successful adversarial texts next to their originals (the first of the seeded draw in
    ``text_successes.csv``, spread over the attacks): a reader judges at a glance whether they kept the
    question."""
    if won is None or not len(won):
        return []
    order = won.assign(_i=won.groupby(["task", "variant", "attack", "eps_label"], sort=False).cumcount())
    shown = order.sort_values("_i", kind="stable").head(SUMMARY_SUCCESSES)
    lines = [f"  successful adversarial texts ({len(shown)} of {len(won)} drawn; all in text_successes.csv):"]
    for r in shown.itertuples():
        lines.append(f"    {r.attack} {r.task} {r.variant}: {r.original!r} -> {r.adversarial!r} "
                     f"({r.clean_pred} -> {r.adv_pred})")
    return lines


def rejected_by_check(t) -> str:
    """"pos 12, sense 30": the candidates each validity check rejected, in a text-attack table row."""
    return ", ".join(f"{name} {int(t[f'rejected_{name}'])}" for name in agg.CHECK_ORDER
                     if f"rejected_{name}" in t and t[f"rejected_{name}"] == t[f"rejected_{name}"]
                     and t[f"rejected_{name}"] > 0)


def no_valid_edit_note(t) -> str:
    """Where an attack had nothing valid to try on at least half the samples it did not fool, say so: its
    accuracy under attack there reads as robustness and is not (every candidate was rejected)."""
    n, failed = t.get("no_valid_edit", math.nan), int(t.failed)
    if n != n or not failed or n * 2 < failed:
        return ""
    budget = t.eps_label.replace("words=", "")
    return (f"no valid edit within {budget} word(s) for {int(n)} of the {failed} samples not fooled: "
            "their accuracy under attack is not evidence of robustness")


def _score_lines(clean: pd.DataFrame, worst: pd.DataFrame) -> list[str]:
    """Mean task metric clean and under attack (x100): for captions this is CIDEr-D, where "robust %" only
    counts the captions whose CIDEr-D stayed above half its clean value."""
    if not len(worst) or "robust_score" not in worst or "score" not in clean:
        return []
    cidx = clean.set_index(["variant", "task"])
    lines = ["", "MEAN TASK METRIC x100, clean -> worst case (captions: CIDEr-D; grounding: IoU; VQA: answer "
                 "credit; VE: accuracy)"]
    for _, w in worst.iterrows():
        c = cidx.loc[(w.variant, w.task)]
        lines.append(f"  {w.task:10} {w.variant:14} {w.norm + ' ' + w.eps_label:14} {_num(100 * c.score)} -> "
                     f"{_num(100 * w.robust_score)}")
    return lines


def unanswerable_checks(checks: pd.DataFrame | None) -> pd.DataFrame:
    """The ``unanswerable`` checks that counted any sample (none of its answers in the answer set)."""
    if checks is None or not len(checks):
        return pd.DataFrame()
    return checks[(checks["name"] == "unanswerable") & (checks["value"] > 0)]


def unanswerable_lines(checks: pd.DataFrame | None) -> list[str]:
    """Samples no answer of the answer set can get right (counted wrong), where there are any."""
    rows = unanswerable_checks(checks)
    if not len(rows):
        return []
    return ["", "ANSWER SETS (samples counted wrong because none of their answers is in the variant's answer set)"] + [
        f"  {r.task:10} {r.variant:14} {r.detail}" for r in rows.itertuples()]


def _decided_lines(breakdown: pd.DataFrame | None) -> list[str]:
    """Image-decidable vs text-decided samples, side by side per variant, task and threat."""
    if breakdown is None or not len(breakdown):
        return []
    b = breakdown[breakdown.by == "decided_by"]
    if not len(b):
        return []
    lines = ["", "BY WHAT DECIDES THE ANSWER (accuracy % on image-decidable vs text-decided samples, n in brackets)"]
    for (variant, task, norm, label), g in b.groupby(["variant", "task", "norm", "eps_label"], sort=False):
        parts = "  ".join(f"{r.value} {_pct(r.acc)} ({r.n})" for r in g.itertuples())
        lines.append(f"  {task:10} {variant:14} {(norm + ' ' + label).strip():14} {parts}")
    return lines
