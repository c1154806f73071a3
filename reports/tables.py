"""Tables as format-neutral data: each cell holds its display text and a numeric sort key.

The HTML renders them as sortable tables (the sort key goes into ``data-sort``), Markdown and LaTeX
print the display text, so the three never format a number differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from attacks.threat import Threat
from reports.headline import attack_name, fmt_p, fmt_points

if TYPE_CHECKING:
    from reports.model import Report


@dataclass
class Column:
    label: str
    numeric: bool = False
    #: Explanation shown as a tooltip in HTML and listed under the table elsewhere.
    help: str = ""


@dataclass
class Cell:
    text: str
    sort: float | None = None
    #: CSS class: "flag", "better", "worse", "ns", "muted".
    cls: str = ""
    #: Second, smaller line (an interval, a p-value).
    sub: str = ""


@dataclass
class Table:
    key: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    #: One CSS class per row ("flagged" rows are highlighted).
    row_classes: list[str] = field(default_factory=list)

    def add(self, cells: list[Cell], cls: str = "") -> None:
        self.rows.append(cells)
        self.row_classes.append(cls)


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x, digits: int = 1) -> Cell:
    """A proportion as a percentage cell."""
    if _nan(x):
        return Cell("n/a", None, "muted")
    return Cell(f"{100 * float(x):.{digits}f}", float(x))


def pct_ci(x, lo, hi) -> Cell:
    if _nan(x):
        return Cell("n/a", None, "muted")
    return Cell(f"{100 * float(x):.1f}", float(x), sub=f"[{100 * float(lo):.1f}, {100 * float(hi):.1f}]")


def num(x, fmt: str = "{:,.0f}") -> Cell:
    if _nan(x):
        return Cell("n/a", None, "muted")
    return Cell(fmt.format(float(x)), float(x))


def text(x) -> Cell:
    return Cell("" if _nan(x) else str(x))


#: Names up to this length are kept on one line; longer ones (paths) may wrap anywhere.
NAME_NOWRAP = 24


def name(x) -> Cell:
    """A model/variant name: one line when short, so tables do not split 'embedded-prompt-16'."""
    s = "" if _nan(x) else str(x)
    return Cell(s, None, "name" if len(s) <= NAME_NOWRAP else "name long")


def fmt_params(n) -> str:
    """1234567 -> '1.23M'."""
    if _nan(n):
        return "n/a"
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def eps_cell(label: str, eps: float, norm: str) -> Cell:
    return Cell(f"{Threat(norm).symbol}\u00a0{label}", float(eps))


def flags_for(flags: pd.DataFrame, variant: str, task: str, norm: str = "", eps_label: str = "") -> list[str]:
    """Validity flags that apply to a row: same variant and task, and the same norm/eps when the flag has one."""
    if not len(flags):
        return []
    f = flags[(flags.variant == variant) & (flags.task == task)]
    out = []
    for r in f.itertuples():
        if (not r.norm or not norm or r.norm == norm) and (not r.eps_label or not eps_label or r.eps_label == eps_label):
            out.append(str(r.flag))
    return list(dict.fromkeys(out))


def _flag_cell(names: list[str]) -> Cell:
    return Cell(", ".join(names), float(len(names)), "flag" if names else "")


def _params(report: Report, variant: str):
    return report.variant_meta.get(variant, {}).get("trainable_params")


def _score_cell(clean: float, attacked: float) -> Cell:
    if _nan(clean) or _nan(attacked):
        return Cell("-", None)
    return Cell(f"{100 * clean:.1f} → {100 * attacked:.1f}", float(attacked))


def worst_case_table(report: Report) -> Table:
    t = Table("worst-case", "Robust accuracy (worst case over attacks)",
              "Per task, variant and budget: accuracy when every attack must fail on a sample (AutoAttack's "
              "rule); 95% Wilson intervals in brackets. Percentages.",
              [Column("Task"), Column("Variant"), Column("Method"), Column("Trainable params", True),
               Column("Budget", True), Column("Clean acc", True), Column("Robust acc [95% CI]", True),
               Column("n", True),
               Column("Metric clean → attacked", True, "mean task metric x100, clean and per-sample worst case "
                      "over the attacks: CIDEr-D for captions, IoU for grounding, answer credit for VQA, "
                      "accuracy for VE"),
               Column("Flags", False, "validity flags raised for this row (see the flags section)")])
    clean = report.tables["clean"].set_index(["variant", "task"])
    for r in report.tables["worst_case"].itertuples():
        c = clean.loc[(r.variant, r.task)]
        flags = flags_for(report.flags, r.variant, r.task, r.norm, r.eps_label)
        p = _params(report, r.variant)
        t.add([text(r.task), name(r.variant), text(report.method(r.variant)),
               Cell(fmt_params(p), None if _nan(p) else float(p)), eps_cell(r.eps_label, r.eps, r.norm),
               pct(c.acc), pct_ci(r.robust_acc, r.robust_ci_low, r.robust_ci_high), num(r.robust_n),
               _score_cell(getattr(c, "score", math.nan), getattr(r, "robust_score", math.nan)),
               _flag_cell(flags)], "flagged" if flags else "")
    return t


def attack_table(report: Report) -> Table:
    t = Table("per-attack", "Per-attack results",
              "Attacks run in the order listed at each budget; robust accuracy is cumulative (a sample counts as "
              "robust only if this attack and every earlier one failed). Success rate: share of clean-correct "
              "samples fooled. Perturbation norms are means over fooled samples (pixels in [0, 1]). Gradient "
              "evaluations and queries are totals over samples.",
              [Column("Task"), Column("Variant"), Column("Budget", True), Column("Attack"),
               Column("Clean acc", True), Column("Robust acc [95% CI]", True), Column("Success rate", True),
               Column("Mean L∞", True), Column("Mean L2", True), Column("Grad evals", True),
               Column("Queries", True), Column("Time (s)", True), Column("Flags")])
    for r in report.tables["attacks"].itertuples():
        flags = flags_for(report.flags, r.variant, r.task, r.norm, r.eps_label)
        t.add([text(r.task), name(r.variant), eps_cell(r.eps_label, r.eps, r.norm), text(attack_name(r.attack)),
               pct(r.clean_acc), pct_ci(r.robust_acc, r.robust_ci_low, r.robust_ci_high), pct(r.success_rate),
               num(r.mean_linf, "{:.4f}"), num(r.mean_l2, "{:.3f}"), num(r.grad_evals), num(r.queries),
               num(r.seconds, "{:.1f}"), _flag_cell(flags)], "flagged" if flags else "")
    return t


def paired_table(report: Report) -> Table:
    t = Table("paired", "Paired comparisons (every pair of variants)",
              "Same samples, two variants. Difference = A − B in percentage points with Newcombe's paired 95% "
              "interval; p: exact McNemar test on the discordant samples (uncorrected for multiple comparisons).",
              [Column("Task"), Column("Budget", True), Column("A"), Column("B"), Column("Acc A", True),
               Column("Acc B", True), Column("A − B (points)", True), Column("Only A", True),
               Column("Only B", True), Column("p", True)])
    from reports.headline import paired_diff_ci

    for r in report.tables["paired"].itertuples():
        n, oa, ob = int(r.n), int(r.only_a), int(r.only_b)
        both = max(int(round(r.acc_a * n)) - oa, 0) if n else 0
        lo, hi = paired_diff_ci(both, oa, ob, max(n - both - oa - ob, 0))
        sig = r.p_value < 0.05 and oa != ob
        budget = Cell("clean", 0.0) if r.norm == "clean" else eps_cell(r.eps_label, r.eps, r.norm)
        t.add([text(r.task), budget, name(r.variant_a), name(r.variant_b), pct(r.acc_a), pct(r.acc_b),
               Cell(fmt_points(r.diff), float(r.diff), "better" if sig and r.diff > 0 else "worse" if sig else "ns",
                    sub=f"[{fmt_points(lo)}, {fmt_points(hi)}]"),
               num(oa), num(ob), Cell(fmt_p(r.p_value).removeprefix("p ").removeprefix("= "), float(r.p_value))])
    return t


def transfer_table(report: Report) -> Table:
    t = Table("transfer", "Transfer attacks",
              "Accuracy of the target on adversarial images crafted on the source (PGD), over the target's "
              "clean-correct samples; the diagonal is the white-box case.",
              [Column("Task"), Column("Attack"), Column("Budget", True), Column("Source"), Column("Target"),
               Column("Target acc [95% CI]", True), Column("n", True)])
    for r in report.tables["transfer"].itertuples():
        t.add([text(r.task), text(attack_name(r.attack)), Cell(str(r.eps_label)), name(r.source), name(r.target),
               pct_ci(r.acc, r.ci_low, r.ci_high), num(r.n)])
    return t


def flags_table(report: Report) -> Table:
    t = Table("flags", "Validity flags", "Signs that a number may not mean what it seems (gradient masking and "
              "friends); thresholds are listed in the notes.",
              [Column("Variant"), Column("Task"), Column("Budget"), Column("Flag"), Column("Detail")])
    for r in report.flags.itertuples():
        budget = " ".join(x for x in (r.norm, r.eps_label) if x)
        t.add([name(r.variant), text(r.task), text(budget), Cell(str(r.flag), None, "flag"), text(r.detail)], "flagged")
    return t


#: Label breakdowns are shown for tasks with at most this many labels (all of them are in breakdown.csv).
MAX_LABELS_SHOWN = 8


def breakdown_table(report: Report) -> Table:
    t = Table("breakdown", "Accuracy by sample group",
              "Clean and worst-case robust accuracy per true label (closed-answer tasks with at most "
              f"{MAX_LABELS_SHOWN} labels) and per what decides the answer: 'text' samples are answerable from "
              "the text alone (the generated benchmark's undecidable-predicate and depth 'maybe' hypotheses), so "
              "robustness there says nothing about the image pathway. 95% Wilson intervals. Percentages.",
              [Column("Task"), Column("Variant"), Column("Group"), Column("Budget", True),
               Column("Acc [95% CI]", True), Column("n", True)])
    b = report.tables["breakdown"]
    many = {task for task, g in b[b.by == "label"].groupby("task") if g.value.nunique() > MAX_LABELS_SHOWN}
    for r in b.itertuples():
        if r.by == "label" and r.task in many:
            continue
        budget = Cell("clean", 0.0) if r.norm == "clean" else eps_cell(r.eps_label, r.eps, r.norm)
        group = f"label {r.value}" if r.by == "label" else f"{r.value}-decided"
        t.add([text(r.task), name(r.variant), text(group), budget, pct_ci(r.acc, r.ci_low, r.ci_high), num(r.n)])
    return t


def text_attack_table(report: Report) -> Table:
    from robustbench_ofa.evaluation.outputs import rejected_by_check

    t = Table("text-attacks", "Text attacks",
              "TextAttack's summary per text (and joint) attack: samples fooled / not fooled / skipped (clean "
              "prediction already wrong) / cascaded (fooled earlier by a contained threat); accuracy under "
              "attack over all samples; success rate over the samples the attack itself attacked. Validity: "
              "candidates rejected by the label-keeping checks (the generated benchmark's oracle, WordNet "
              "antonyms and sister terms, protected words, and for word substitutions part of speech and word "
              "sense) on which the model would have been wrong, and the share of would-be "
              "successes that were only such relabellings (samples not fooled with a rejected success / "
              "(those + fooled)); samples not fooled on which no candidate passed the checks (no valid edit: "
              "not evidence of robustness); candidates rejected by each check. Percentages.",
              [Column("Task"), Column("Variant"), Column("Attack"), Column("Budget", True),
               Column("Fooled / not / skipped / cascaded"), Column("Acc under attack", True),
               Column("Success rate", True), Column("Words changed %", True), Column("Queries", True),
               Column("Rejected successes", True, "rejected candidates the model would have got wrong (total)"),
               Column("Rejected share", True, "would-be successes that were relabellings, not robustness "
                                             "failures"),
               Column("No valid edit", True, "samples not fooled on which every candidate was rejected: "
                                            "nothing valid to try, no evidence of robustness"),
               Column("Rejected by check", False, "distinct candidates each validity check rejected")])
    for r in report.tables["text_attacks"].itertuples():
        counts = f"{r.successful} / {r.failed} / {r.skipped} / {r.cascaded}"
        rejected = getattr(r, "rejected_successes", math.nan)
        budget = Cell(f"{Threat(r.norm).symbol}\u00a0{r.eps_label}")
        t.add([text(r.task), name(r.variant), text(attack_name(r.attack)), budget, Cell(counts, float(r.successful)),
               pct(r.acc_under_attack), pct(r.attack_success_rate), num(r.avg_perturbed_word_pct, "{:.1f}"),
               num(r.avg_queries, "{:.1f}"), num(rejected), pct(getattr(r, "rejected_share", math.nan)),
               num(getattr(r, "no_valid_edit", math.nan)), text(rejected_by_check(r._asdict()) or "-")])
    return t


def result_tables(report: Report) -> list[Table]:
    out = [worst_case_table(report)]
    if len(report.tables.get("breakdown", ())):
        out.append(breakdown_table(report))
    if len(report.tables["attacks"]):
        out.append(attack_table(report))
    if len(report.tables.get("text_attacks", ())):
        out.append(text_attack_table(report))
    if len(report.tables["paired"]):
        out.append(paired_table(report))
    return out


def headline_table(report: Report, task: str) -> Table:
    """Rows: variants; columns: clean and each budget; cells: difference to the reference, its CI and p."""
    threats = report.threats[task]
    comps = {(c.subject, c.threat): c for c in report.comparisons[task]}
    cols = [Column("Variant"), Column("Method")] + [Column(th.short, True) for th in threats]
    t = Table(f"headline-{task}", f"{task}: difference to {report.reference} (points)",
              f"Each cell: accuracy of the variant minus that of {report.reference} on the same samples, in "
              "percentage points; below, the paired 95% interval and the McNemar p-value. Green: significantly "
              "more robust/accurate; red: significantly less (p < 0.05).", cols)
    for v in report.variants:
        if v == report.reference:
            continue
        cells = [name(v), text(report.method(v))]
        for th in threats:
            c = comps.get((v, "clean" if th.norm == "clean" else th.phrase))
            if c is None:
                cells.append(Cell("n/a", None, "muted"))
                continue
            lo, hi = c.ci
            cells.append(Cell(fmt_points(c.diff), c.diff, c.verdict,
                              sub=f"[{fmt_points(lo)}, {fmt_points(hi)}] {fmt_p(c.p_value)}"))
        t.add(cells)
    return t


def variant_table(report: Report) -> Table:
    t = Table("variants", "Variants", "Models evaluated: tuning method, trainable parameters, hyper-parameters "
              "and the SHA-256 of the weights (first 16 hex digits).",
              [Column("Variant"), Column("Method"), Column("Trainable params", True), Column("Hyper-parameters"),
               Column("Weights SHA-256"), Column("Attack time (s)", True)])
    samples = report.tables["samples"]
    for v in report.variants:
        info = report.variant_meta.get(v, {})
        p = info.get("trainable_params")
        hp = info.get("hparams") or {}
        hp_text = ", ".join(f"{k}={val}" for k, val in sorted(hp.items())) if isinstance(hp, dict) else str(hp)
        sha = info.get("sha256") or ""
        if isinstance(sha, dict):
            sha = "; ".join(f"{k}: {str(h)[:16]}" for k, h in sorted(sha.items()))
        else:
            sha = str(sha)[:16]
        secs = float(samples[samples.variant == v].seconds.sum()) if len(samples) else math.nan
        t.add([name(v), text(report.method(v)), Cell(fmt_params(p), None if _nan(p) else float(p)),
               text(hp_text), Cell(sha, None, "mono"), num(secs, "{:.1f}")])
    return t


def regression_tables(report: Report) -> list[Table]:
    """The regression gate of this run (``robust-ofa regress``): every gated number, and the stated power."""
    from robustbench_ofa.regress import FAILING

    reg = report.regression
    if not reg:
        return []
    s = reg.get("settings") or {}
    verdict = "FAILED" if reg.get("failed") else "passed"
    rules = ("fixed: the variant's weights are the baseline's, a number fails on more than "
             f"{s.get('allow_flips')} sample(s) turned wrong; paired: retrained weights, one-sided exact McNemar "
             f"with Holm's correction at alpha/2 = {s.get('alpha', 0.05) / 2:g}; count: a count-only baseline, "
             "two-sided two-proportion test")
    if s.get("tolerance") is not None:
        rules += f"; a number must also fall by more than the tolerance {s['tolerance']:g}"
    g = Table("regression", f"Regression gate: {verdict}",
              f"This run against the baseline {reg.get('baseline', '?')} (robust-ofa regress). Lost: baseline-"
              f"correct samples now wrong; gained: the reverse. Tests: {rules}.",
              [Column("Number"), Column("Test"), Column("Baseline", True), Column("Run", True),
               Column("Delta (points)", True), Column("Lost", True), Column("Gained", True), Column("p", True),
               Column("Status")])
    for r in reg["rows"]:
        (bk, bn), (nk, nn) = r["base"], r["run"]
        status = str(r["status"])
        cls = "worse" if status in FAILING else ("better" if status == "improvement" else "")
        p = r.get("p_holm") if r.get("p_holm") is not None else r.get("p")
        g.add([text(r["key"]), text(r["mode"]), Cell(f"{bk}/{bn}", bk / bn if bn else None),
               Cell(f"{nk}/{nn}", nk / nn if nn else None), Cell(f"{100 * r['delta']:+.1f}", 100 * r["delta"]),
               num(r.get("lost")), num(r.get("gained")),
               Cell("" if p is None else fmt_p(p), p), Cell(status, None, cls)], "flagged" if cls == "worse" else "")
    for a in reg.get("aggregates") or []:
        cls = "worse" if a["status"] in FAILING else ""
        p = a.get("p")
        g.add([text(f"all {a['numbers']} {a['mode']} numbers"), text(a["mode"] + " aggregate"), text(""), text(""),
               text(""), num(a["lost"]), num(a["gained"]), Cell("" if p is None else fmt_p(p), p),
               Cell(f"{a['status']} ({a['rule']})", None, cls)], "flagged" if cls else "")
    target = 100 * float(reg.get("power_target", 0.8))
    pw = Table("regression-power", "Detectable regressions",
               f"The smallest drop in accuracy this gate detects with {target:.0f}% probability at this run's n and "
               "baseline accuracies, per number and for a uniform drop over all numbers (module robustbench_ofa."
               "regress: exact binomial sums per number, a normal approximation for the aggregate).",
               [Column("Number"), Column("Test"), Column("n", True), Column("Baseline acc.", True),
                Column("Detectable drop (points)", True), Column("How")])
    for p in reg.get("power") or []:
        drop = p.get("drop")
        pw.add([text(p["key"]), text(p["mode"]), num(p["n"]), pct(p["base_acc"]),
                Cell("not detectable" if drop is None else f"{100 * drop:.1f}", None if drop is None else 100 * drop),
                text(p.get("note", ""))])
    return [g, pw]
