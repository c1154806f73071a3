"""The robustness-per-parameter frontier: what each variant's robustness cost, in trainable parameters
and in training compute, for runs that include robust-trained (adversarially tuned) variants.

Budget: the L-inf budget the robust-trained variants were trained at when the run measured it (what they
were made for), else the run's smallest L-inf budget. The sentences compare, on the same samples (paired
McNemar test, Newcombe interval: ``reports.headline``), the robust-trained prompt-tuned variant with the
standard finetuned one (does adversarial prompt tuning beat standard finetuning?) and with the
robust-trained finetuned one (how close does it come?). Nothing is written when a role has no variant.
"""

from __future__ import annotations

import math

from reports.headline import ALPHA, fmt_p, fmt_points, paired_diff_ci
from reports.model import Report
from reports.tables import Cell, Column, Table, fmt_params, name, num, pct, pct_ci, text


def has_robust_variants(report: Report) -> bool:
    return any(report.robust_trained(v) for v in report.variants)


def main_budget(report: Report, task: str) -> tuple[str, float] | None:
    """(eps label, eps) of the frontier's L-inf budget for ``task`` (None: no L-inf result)."""
    wc = report.tables["worst_case"]
    rows = wc[(wc.task == task) & (wc.norm == "linf")]
    if not len(rows):
        return None
    trained = {round(float(report.variant_meta[v]["adversarial"]["eps"]), 9)
               for v in report.variants if report.robust_trained(v)}
    for r in rows.sort_values("eps").itertuples():
        if round(float(r.eps), 9) in trained:
            return r.eps_label, float(r.eps)
    first = rows.sort_values("eps").iloc[0]
    return first.eps_label, float(first.eps)


def frontier_table(report: Report) -> Table:
    t = Table("frontier", "Robustness per parameter and per unit of training compute",
              "Per task and variant, at the L-inf budget the robust-trained variants were trained at (else the "
              "smallest): trainable parameters, training compute (sample forward+backward passes of the whole "
              "tuning run: a batch of 32 counts 32; n/a when the card does not record it), clean and worst-case "
              "robust accuracy (95% Wilson interval). Percentages.",
              [Column("Task"), Column("Variant"), Column("Method"), Column("Trainable params", True),
               Column("Training compute", True, "sample forward+backward passes of the tuning run "
                                                "(card: train_grad_evals)"),
               Column("Budget", True), Column("Clean acc", True), Column("Robust acc [95% CI]", True)])
    clean = report.tables["clean"].set_index(["variant", "task"])
    wc = report.tables["worst_case"]
    for task in report.tasks:
        budget = main_budget(report, task)
        if budget is None:
            continue
        label, _ = budget
        for v in report.variants:
            rows = wc[(wc.task == task) & (wc.variant == v) & (wc.norm == "linf") & (wc.eps_label == label)]
            if not len(rows):
                continue
            r = rows.iloc[0]
            info = report.variant_meta.get(v, {})
            p, cost = info.get("trainable_params"), info.get("train_grad_evals")
            t.add([text(task), name(v), text(report.method(v)),
                   Cell(fmt_params(p), None if p is None else float(p)),
                   num(math.nan if cost is None else cost), text(f"L-inf {label}"), pct(clean.loc[(v, task)].acc),
                   pct_ci(r.robust_acc, r.robust_ci_low, r.robust_ci_high)],
                  "flagged" if report.robust_trained(v) else "")
    return t


def _role(report: Report, method: str, robust: bool) -> str | None:
    """The first variant with this tuning method that is (or is not) robust-trained."""
    return next((v for v in report.variants if report.variant_meta.get(v, {}).get("method") == method
                 and report.robust_trained(v) == robust), None)


def _pair(report: Report, task: str, label: str, a: str, b: str) -> dict | None:
    p = report.tables["paired"]
    rows = p[(p.task == task) & (p.norm == "linf") & (p.eps_label == label)
             & (((p.variant_a == a) & (p.variant_b == b)) | ((p.variant_a == b) & (p.variant_b == a)))]
    if not len(rows):
        return None
    r = rows.iloc[0].to_dict()
    if r["variant_a"] != a:  # orient as a minus b
        r = {**r, "acc_a": r["acc_b"], "acc_b": r["acc_a"], "diff": -r["diff"], "only_a": r["only_b"],
             "only_b": r["only_a"]}
    return r


def frontier_sentences(report: Report) -> list[str]:
    """Does robust-trained prompt tuning beat standard finetuning, and how close does it come to
    robust-trained finetuning? One sentence per comparison and task, from the paired test."""
    prompt_at, ft, ft_at = _role(report, "prompt", True), _role(report, "finetune", False), \
        _role(report, "finetune", True)
    out = []
    for task in report.tasks:
        budget = main_budget(report, task)
        if prompt_at is None or budget is None:
            continue
        label = budget[0]
        for other, question in ((ft, "standard finetuning"), (ft_at, "robust-trained finetuning")):
            r = None if other is None else _pair(report, task, label, prompt_at, other)
            if r is None:
                continue
            n = int(r["n"])
            if n == 0:  # no sample both variants were scored on
                continue
            both = round(r["acc_a"] * n) - int(r["only_a"])  # acc_a = (both + only_a) / n
            neither = n - both - int(r["only_a"]) - int(r["only_b"])
            lo, hi = paired_diff_ci(max(both, 0), int(r["only_a"]), int(r["only_b"]), max(neither, 0))
            significant = r["p_value"] < ALPHA
            verdict = ("is more robust than" if r["diff"] > 0 else "is less robust than") if significant else \
                "is not significantly different from"
            out.append(f"{task}, L-inf {label}: {prompt_at} ({100 * r['acc_a']:.1f} %) {verdict} {other} "
                       f"({question}, {100 * r['acc_b']:.1f} %): {fmt_points(r['diff'])} points "
                       f"[{fmt_points(lo)}, {fmt_points(hi)}], {fmt_p(r['p_value'])}, n = {n}.")
    return out


def frontier_plot(report: Report):
    """Per task, robust accuracy at the frontier budget against trainable parameters and against training
    compute (both log scale); robust-trained variants are filled diamonds, standard ones hollow circles."""
    from reports.model import Figure
    from reports.plots import _grid, _legend_below, _mpl, _png, _rc, colours

    wc = report.tables["worst_case"]
    plt = _mpl()
    col = colours(report.variants)
    axes_spec = (("trainable_params", "trainable parameters (log)"),
                 ("train_grad_evals", "training compute: sample fwd+bwd passes (log)"))
    with plt.rc_context(_rc()):
        fig, axes = _grid(2 * len(report.tasks), per_row=2)
        handles: dict[str, object] = {}
        for k, task in enumerate(report.tasks):
            budget = main_budget(report, task)
            for j, (key, xlabel) in enumerate(axes_spec):
                ax = axes[2 * k + j]
                for v in report.variants:
                    x = report.variant_meta.get(v, {}).get(key)
                    rows = wc[(wc.task == task) & (wc.variant == v) & (wc.norm == "linf")
                              & (wc.eps_label == (budget[0] if budget else None))]
                    if not isinstance(x, (int, float)) or not x or not len(rows):
                        continue
                    r = rows.iloc[0]
                    robust = report.robust_trained(v)
                    y, lo, hi = 100 * r.robust_acc, 100 * r.robust_ci_low, 100 * r.robust_ci_high
                    handles[v] = ax.errorbar([x], [y], yerr=[[max(0.0, y - lo)], [max(0.0, hi - y)]],
                                             fmt="D" if robust else "o", color=col[v], ms=6, capsize=2,
                                             mfc=col[v] if robust else "white")
                ax.set_xscale("log")
                ax.set_ylim(-3, 103)
                ax.set_title(f"{task}, L∞ {budget[0] if budget else ''}")
                ax.set_xlabel(xlabel)
                ax.set_ylabel("robust accuracy (%)")
        _legend_below(fig, list(handles.values()), list(handles), ncol=3)
        png = _png(fig)
    return Figure("frontier", "Robustness against trainable parameters and training compute",
                  "Worst-case robust accuracy at the budget the robust-trained variants were trained at (else the "
                  "smallest L∞ budget), with 95% Wilson intervals. Filled diamonds: robust-trained (adversarial "
                  "tuning); hollow circles: standard tuning. Variants without a recorded parameter count or "
                  "training compute are left out of that panel.", png)


def _standard_twin(report: Report, v: str) -> str | None:
    """The variant trained like ``v`` but without adversarial training (same base, method,
    hyper-parameters and ``twin_recipe``: tasks, data, training settings): the evaluator's choice of
    standard twin (``Evaluator._sources``). Runs from before the recipe was recorded match without it."""
    info = report.variant_meta.get(v, {})
    keys = ("base", "method", "hparams") + (("twin_recipe",) if "twin_recipe" in info else ())
    return next((u for u in report.variants if not report.robust_trained(u)
                 and all(report.variant_meta.get(u, {}).get(k) == info.get(k) for k in keys)), None)


#: Validity flags that say a variant's robust accuracy may be overstated (masked gradients).
MASKING_FLAGS = ("transfer-beats-white-box", "large-eps-not-broken", "black-box-beats-white-box")


def _masking_flags(report: Report, v: str, task: str, label: str) -> list[str]:
    f = report.flags
    if f is None or not len(f):
        return []
    rows = f[(f.variant == v) & (f.task == task) & f.flag.isin(MASKING_FLAGS)
             & ((f.eps_label == label) | (f.eps_label == ""))]
    return list(dict.fromkeys(rows.flag))


def _own_attacks(report: Report) -> list[str]:
    """The run's own white-box attacks, as the evaluator defines them (``evaluation.config.own_white_box``):
    their rows alone give the worst case before the strong protocol's additions."""
    from robustbench_ofa.evaluation.config import own_white_box

    return own_white_box(list(report.settings.get("attacks") or []))


def _paired(flags, a: str, b: str, task: str, label: str) -> tuple[float, float, int] | None:
    """(accuracy difference a - b, exact McNemar p, n) on the samples both were scored on."""
    from robustbench_ofa.stats import paired_mcnemar

    try:
        fa, fb = flags.loc[(a, task, "linf", label)], flags.loc[(b, task, "linf", label)]
    except KeyError:
        return None
    common = fa.index.intersection(fb.index)
    if not len(common):
        return None
    xa, xb = list(fa[common].values), list(fb[common].values)
    return (sum(xa) - sum(xb)) / len(common), paired_mcnemar(xa, xb).p_value, len(common)


def survival_sentences(report: Report) -> list[str]:
    """Whether each robust-trained variant's gains over its standard twin survive the strong protocol.

    A gain is an L-inf budget where the run's own white-box attacks leave the variant significantly more
    robust than its twin (paired exact McNemar on the same samples, p < ``ALPHA``). It survives when the
    strong protocol's worst case (the adaptive attacks, then images crafted on the standard and finetuned
    twins, all cascaded per sample) still shows a significant gain and no masking flag is raised on the
    variant at that budget. One sentence per variant and task; without ``--protocol strong`` the report
    says that the check was not made."""
    from robustbench_ofa.evaluation.aggregate import robust_flags

    robust = [v for v in report.variants if report.robust_trained(v)]
    pairs = [(v, _standard_twin(report, v)) for v in robust]
    pairs = [(v, s) for v, s in pairs if s is not None]
    if not pairs:
        return []
    if report.settings.get("protocol") != "strong":
        return ["Whether the robust-trained variants' gains survive adaptive attacks was not checked: rerun with "
                "--protocol strong (margin and targeted losses, EOT, transfer from the standard and finetuned "
                "twins)."]
    res = report.tables.get("samples")
    if res is None or not len(res):
        return []
    res = res[res.norm == "linf"]
    mine_attacks = _own_attacks(report)
    if not mine_attacks:
        return ["Whether the robust-trained variants' gains survive the strong protocol was not checked: the run "
                "named no white-box attack of its own (--attack) to measure the gain with."]
    strong = robust_flags(res).sort_index()
    own = robust_flags(res[res.attack.isin(mine_attacks)]).sort_index()
    ladder = res.drop_duplicates("eps_label").sort_values("eps").eps_label.tolist()
    out = []
    for task in report.tasks:
        for v, s in pairs:
            parts, gains = [], 0
            for label in ladder:
                mine, both = _paired(own, v, s, task, label), _paired(strong, v, s, task, label)
                if mine is None or both is None or not (mine[0] > 0 and mine[1] < ALPHA):
                    continue
                gains += 1
                flagged = _masking_flags(report, v, task, label)
                kept = both[0] > 0 and both[1] < ALPHA and not flagged
                parts.append(f"{label} {fmt_points(mine[0])} -> {fmt_points(both[0])} points ({fmt_p(both[1])}, "
                             f"n = {both[2]}): " + ("survives" if kept else
                                                    f"flagged ({', '.join(flagged)})" if flagged else
                                                    "does not survive"))
            if gains:
                out.append(f"{task}: {v} vs its standard twin {s}, robust-accuracy gain under the run's own "
                           f"white-box attacks -> under the strong protocol, at L-inf " + "; ".join(parts) + ".")
            else:
                out.append(f"{task}: {v} has no significant gain over its standard twin {s} under the run's own "
                           f"white-box attacks at any L-inf budget: nothing to check against the strong protocol.")
    return out
