"""Report figures with matplotlib (Agg, no display), returned as PNG bytes for embedding.

Text from the data (variant names) is drawn with mathtext parsing off, so a name containing ``$`` is
printed as is instead of breaking the figure. Each variant keeps one colour in every figure.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from attacks.threat import Threat
from reports.headline import attack_name
from reports.model import Figure
from reports.tables import fmt_params

if TYPE_CHECKING:
    from reports.model import Report

DPI = 150
WIDTH = 9.5  # inches; scaled to the page/column width by HTML and PDF


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _rc() -> dict:
    return {"text.parse_math": False, "font.size": 10, "axes.titlesize": 11, "axes.grid": True,
            "grid.alpha": 0.3, "figure.dpi": DPI, "savefig.dpi": DPI, "axes.spines.top": False,
            "axes.spines.right": False}


def _png(fig) -> bytes:
    plt = _mpl()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def colours(variants: list[str]) -> dict[str, tuple]:
    plt = _mpl()
    cmap = plt.get_cmap("tab10")
    return {v: cmap(i % 10) for i, v in enumerate(variants)}


def _grid(n: int, per_row: int = 3, height: float = 3.4, width: float | None = None):
    plt = _mpl()
    cols = min(n, per_row)
    rows = math.ceil(n / cols)
    width = width or {1: 6.5, 2: 8.5}.get(cols, WIDTH)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows + 0.6), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig, handles, labels, ncol: int | None = None) -> None:
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=ncol or min(len(labels), 4), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(labels) / (ncol or 4)), 1, 1))
    else:
        fig.tight_layout()


def robust_vs_eps(report: Report) -> Figure | None:
    """Robust accuracy against the budget, one line per variant, 95% Wilson band; budget 0 is clean."""
    worst, clean = report.tables["worst_case"], report.tables["clean"]
    if not len(worst):
        return None
    plt = _mpl()
    panels = [(t, n) for t in report.tasks for n in Threat.image() if len(worst[(worst.task == t) & (worst.norm == n)])]
    if not panels:  # only text / joint threats: no pixel budget axis to plot against
        return None
    col = colours(report.variants)
    with plt.rc_context(_rc()):
        fig, axes = _grid(len(panels))
        handles = {}
        for ax, (task, norm) in zip(axes, panels):
            w = worst[(worst.task == task) & (worst.norm == norm)]
            labels = w[["eps", "eps_label"]].drop_duplicates().sort_values("eps")
            for v in report.variants:
                g = w[w.variant == v].sort_values("eps")
                c = clean[(clean.variant == v) & (clean.task == task)]
                if not len(g) or not len(c):
                    continue
                x = np.r_[0.0, g.eps.to_numpy(float)]
                y = 100 * np.r_[c.acc.iloc[0], g.robust_acc.to_numpy(float)]
                lo = 100 * np.r_[c.ci_low.iloc[0], g.robust_ci_low.to_numpy(float)]
                hi = 100 * np.r_[c.ci_high.iloc[0], g.robust_ci_high.to_numpy(float)]
                (line,) = ax.plot(x, y, marker="o", ms=4, color=col[v], label=v)
                ax.fill_between(x, lo, hi, color=col[v], alpha=0.15, linewidth=0)
                handles[v] = line
            ax.set_xticks(np.r_[0.0, labels.eps.to_numpy(float)])
            ax.set_xticklabels(["0"] + list(labels.eps_label), rotation=45 if len(labels) > 4 else 0)
            ax.set_ylim(-3, 103)
            ax.set_title(f"{task} ({norm.symbol})")
            ax.set_xlabel("budget ε" + (" (pixels in [0, 1])" if norm is Threat.LINF else " (L2)"))
            ax.set_ylabel("robust accuracy (%)")
        _legend_below(fig, list(handles.values()), list(handles))
        png = _png(fig)
    return Figure("robust-vs-eps", "Robust accuracy against the attack budget",
                  "Worst case over all attacks at each budget (0 = clean accuracy); bands are 95% Wilson "
                  "intervals.", png)


def params_vs_robust(report: Report) -> tuple[Figure | None, str]:
    """Trainable parameters (log scale) against accuracy, clean and at each budget: the efficiency axis."""
    params = {v: report.variant_meta.get(v, {}).get("trainable_params") for v in report.variants}
    known = {v: float(p) for v, p in params.items() if isinstance(p, (int, float)) and p and p > 0}
    if not known:
        return None, ("Trainable parameters vs robustness: skipped, the results store has no trainable-parameter "
                      "counts for the variants (meta 'variants').")
    worst, clean = report.tables["worst_case"], report.tables["clean"]
    plt = _mpl()
    col = colours(report.variants)
    markers = "osD^vP*X"
    with plt.rc_context(_rc()):
        fig, axes = _grid(len(report.tasks))
        handles: dict[str, object] = {}
        for ax, task in zip(axes, report.tasks):
            threats = [t for t in report.threats[task] if t.norm in ("clean", Threat.LINF)]
            for v, p in known.items():
                for i, th in enumerate(threats):
                    if th.norm == "clean":
                        r = clean[(clean.variant == v) & (clean.task == task)]
                        if not len(r):
                            continue
                        y, lo, hi = r.acc.iloc[0], r.ci_low.iloc[0], r.ci_high.iloc[0]
                    else:
                        r = worst[(worst.variant == v) & (worst.task == task) & (worst.norm == th.norm)
                                  & (worst.eps_label == th.eps_label)]
                        if not len(r):
                            continue
                        y, lo, hi = r.robust_acc.iloc[0], r.robust_ci_low.iloc[0], r.robust_ci_high.iloc[0]
                    xj = p * 1.07 ** (i - (len(threats) - 1) / 2)  # spread the budgets apart
                    ax.errorbar([xj], [100 * y], yerr=[[max(0.0, 100 * (y - lo))], [max(0.0, 100 * (hi - y))]], fmt=markers[i % 8],
                                color=col[v], ms=5, capsize=2, alpha=0.9,
                                mfc="white" if th.norm == "clean" else col[v])
                handles[v] = ax.plot([], [], "s", color=col[v])[0]
            for i, th in enumerate(threats):
                handles["· " + th.short] = ax.plot([], [], markers[i % 8], color="grey",
                                                   mfc="white" if th.norm == "clean" else "grey")[0]
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_params(x)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            lo_p, hi_p = min(known.values()), max(known.values())
            ax.set_xlim(lo_p / 3, hi_p * 3)
            ax.set_ylim(-3, 103)
            ax.set_title(task)
            ax.set_xlabel("trainable parameters (log)")
            ax.set_ylabel("accuracy (%)")
        _legend_below(fig, list(handles.values()), [k.removeprefix("· ") for k in handles], ncol=4)
        png = _png(fig)
    missing = [v for v in report.variants if v not in known]
    note = f"Variants without a parameter count are not plotted: {', '.join(missing)}." if missing else ""
    counts = ", ".join(f"{v}: {fmt_params(p)}" for v, p in known.items())
    return Figure("params-vs-robust", "Trainable parameters against accuracy",
                  f"Colour: variant; marker: budget (hollow = clean). Bars: 95% Wilson intervals. "
                  f"Trainable parameters: {counts}. {note}".strip(), png), ""


def common_prefix(names: list[str]) -> str:
    """The shared prefix up to and including its last '-' (e.g. 'embedded-'), or '' when there is none."""
    if len(names) < 2:
        return ""
    import os.path

    prefix = os.path.commonprefix(names)
    cut = prefix.rfind("-")
    prefix = prefix[: cut + 1] if cut > 0 else ""
    return prefix if all(len(n) > len(prefix) for n in names) else ""


def elide(names: list[str], width: int = 22) -> dict[str, str]:
    """Tick labels at most ``width`` characters (cut in the middle, where variant names differ least), so long
    checkpoint names leave the matrix room; widened until every label is unique again."""
    for w in range(width, max(map(len, names), default=0) + 1):
        half = (w - 1) // 2
        out = {n: n if len(n) <= w else n[:half] + "\u2026" + n[len(n) - (w - 1 - half):] for n in names}
        if len(set(out.values())) == len(out):
            return out
    return {n: n for n in names}


def transfer_heatmap(report: Report) -> Figure | None:
    """One source x target matrix per (task, attack, budget), panels side by side, one shared colour scale."""
    tr = report.tables["transfer"]
    if not len(tr):
        return None
    plt = _mpl()
    groups = list(tr.groupby(["task", "attack", "eps_label"], sort=False))
    order = report.variants
    prefix = common_prefix(order)
    short = elide([v[len(prefix):] for v in order])
    short = {v: short[v[len(prefix):]] for v in order}
    per_row = min(3, len(groups))
    panel = min(3.3, max(2.4, 0.45 * len(order) + 1.0), (WIDTH - 0.8) / per_row)
    small = len(order) > 4
    with plt.rc_context({**_rc(), "axes.grid": False}):
        fig, axes = _grid(len(groups), per_row=per_row, height=panel + 0.6, width=per_row * panel + 0.8)
        im = None
        for k, (ax, ((task, attack, label), g)) in enumerate(zip(axes, groups)):
            src = [v for v in order if v in set(g.source)]
            tgt = [v for v in order if v in set(g.target)]
            mat = np.full((len(src), len(tgt)), np.nan)
            for r in g.itertuples():
                mat[src.index(r.source), tgt.index(r.target)] = 100 * r.acc
            cmap = plt.get_cmap("viridis").with_extremes(bad="#e9ecef")
            im = ax.imshow(np.ma.masked_invalid(mat), vmin=0, vmax=100, cmap=cmap)
            for i in range(len(src)):
                for j in range(len(tgt)):
                    nan = np.isnan(mat[i, j])  # the target got none of these samples right on clean input
                    ax.text(j, i, "n/a" if nan else f"{mat[i, j]:.0f}", ha="center", va="center",
                            fontsize=7 if small else 9,
                            color="#6c757d" if nan else "black" if mat[i, j] > 55 else "white")
            ax.set_xticks(range(len(tgt)))
            ax.set_xticklabels([short[v] for v in tgt], rotation=45, ha="right", fontsize=7 if small else 8)
            ax.set_yticks(range(len(src)))
            ax.set_yticklabels([short[v] for v in src] if k % per_row == 0 else [], fontsize=7 if small else 8)
            ax.set_xlabel("target (evaluated)", fontsize=8)
            if k % per_row == 0:
                ax.set_ylabel("source (attacked)", fontsize=8)
            ax.set_title(f"{task}: {attack_name(attack)} at {label}", fontsize=9)
        fig.tight_layout()
        if im is not None:
            fig.colorbar(im, ax=axes, shrink=0.7, fraction=0.04, pad=0.02, label="target accuracy (%)")
        png = _png(fig)
    names = f" Variant names are shown without their common prefix '{prefix}'." if prefix else ""
    if any("\u2026" in t for t in short.values()):
        names += " Long names are shortened in the middle (\u2026); the tables give them whole."
    return Figure("transfer", "Transfer matrix",
                  "Accuracy (%) of each target on adversarial images crafted on each source, over the target's "
                  "clean-correct samples. Diagonal: white-box; a high off-diagonal value means the attack does "
                  "not transfer; n/a: the target has no clean-correct sample to attack." + names, png)


LENGTH_COLUMNS = ("length", "prompt_length", "hparams.length", "prompt_len")
DEPTH_COLUMNS = ("depth", "prompt_depth", "hparams.depth")
NON_METRIC = {"seed", "steps", "rank", "alpha", "dim", "total_params"}


def _first(df: pd.DataFrame, names) -> str | None:
    return next((c for c in names if c in df.columns), None)


def ablation_plot(df: pd.DataFrame) -> tuple[Figure | None, str]:
    """Metrics against prompt length, one line per prompt depth (or against trainable parameters)."""
    length = _first(df, LENGTH_COLUMNS)
    depth = _first(df, DEPTH_COLUMNS)
    if "method" in df.columns and length:
        sub = df[df.method.astype(str).str.startswith("prompt") & df[length].notna()]
        df = sub if len(sub) else df
    xcol = length if length and df[length].notna().any() else ("trainable_params" if "trainable_params" in df.columns
                                                               else None)
    skip = {xcol, depth, "method", "name", "variant", "trainable_params", *LENGTH_COLUMNS, *DEPTH_COLUMNS, *NON_METRIC}
    metrics = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]
    if xcol is None or not metrics:
        return None, ("Prompt ablation: ablation.csv has no prompt-length (or trainable_params) column and numeric "
                      "metric columns to plot; skipped.")
    plt = _mpl()
    metrics = metrics[:6]
    with plt.rc_context(_rc()):
        fig, axes = _grid(len(metrics), height=3.0)
        groups = list(df.groupby(depth, sort=True)) if depth else [("all", df)]
        handles = {}
        for ax, m in zip(axes, metrics):
            for i, (d, g) in enumerate(groups):
                g = g.sort_values(xcol)
                scale = 100 if g[m].dropna().between(0, 1).all() else 1
                (line,) = ax.plot(g[xcol], scale * g[m], marker="o", ms=4, color=f"C{i}")
                handles[f"depth {d}" if depth else "prompt"] = line
            ax.set_xscale("log" if df[xcol].min() > 0 and df[xcol].max() / df[xcol].min() > 20 else "linear")
            ax.set_title(m)
            ax.set_xlabel(xcol)
        _legend_below(fig, list(handles.values()), list(handles))
        png = _png(fig)
    return Figure("ablation", "Prompt length and depth ablation",
                  f"From ablation.csv: each metric against {xcol}" + (f", one line per {depth}" if depth else "")
                  + " (fractions shown as %).", png), ""


def prompt_length_plot(report: Report) -> Figure | None:
    """Accuracy against prompt length for the evaluated prompt-tuned variants (needs two lengths or more).

    The lengths and depths come from the variants' stored hyper-parameters, the accuracies from this run,
    so an evaluation of e.g. prompt-16 and prompt-64 is an ablation without any extra file.
    """
    rows = []
    for v in report.variants:
        info = report.variant_meta.get(v, {})
        hp = info.get("hparams") or {}
        if not str(info.get("method", "")).startswith("prompt") or not isinstance(hp, dict):
            continue
        length = hp.get("length", hp.get("prompt_length"))
        if isinstance(length, (int, float)):
            rows.append((v, float(length), str(hp.get("depth", hp.get("prompt_depth", "")))))
    if len({r[1] for r in rows}) < 2:
        return None
    worst, clean = report.tables["worst_case"], report.tables["clean"]
    plt = _mpl()
    styles = ["-", "--", ":", "-."]
    depths = sorted({r[2] for r in rows})
    with plt.rc_context(_rc()):
        fig, axes = _grid(len(report.tasks), height=3.0)
        handles: dict[str, object] = {}
        for ax, task in zip(axes, report.tasks):
            threats = [t for t in report.threats[task] if t.norm in ("clean", Threat.LINF)]
            for i, th in enumerate(threats):
                for d_i, depth in enumerate(depths):
                    pts = []
                    for v, length, d in rows:
                        if d != depth:
                            continue
                        if th.norm == "clean":
                            r = clean[(clean.variant == v) & (clean.task == task)]
                            y = r.acc.iloc[0] if len(r) else None
                        else:
                            r = worst[(worst.variant == v) & (worst.task == task) & (worst.norm == th.norm)
                                      & (worst.eps_label == th.eps_label)]
                            y = r.robust_acc.iloc[0] if len(r) else None
                        if y is not None:
                            pts.append((length, 100 * y))
                    if not pts:
                        continue
                    pts.sort()
                    (line,) = ax.plot([x for x, _ in pts], [y for _, y in pts], styles[d_i % 4], marker="o", ms=4,
                                      color=f"C{i}")
                    handles.setdefault(th.short, line)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
            ax.set_ylim(-3, 103)
            ax.set_title(task)
            ax.set_xlabel("prompt length (tokens)")
            ax.set_ylabel("accuracy (%)")
        for d_i, depth in enumerate(depths):
            if len(depths) > 1:
                handles[f"depth {depth}"] = axes[0].plot([], [], styles[d_i % 4], color="grey")[0]
        _legend_below(fig, list(handles.values()), list(handles), ncol=5)
        png = _png(fig)
    listed = ", ".join(f"{v} (length {length:g}{', depth ' + d if d else ''})" for v, length, d in rows)
    return Figure("prompt-length", "Prompt length against accuracy",
                  f"Prompt-tuned variants of this run: {listed}. Colour: budget (clean, then each L∞ budget, worst "
                  "case over attacks)" + ("; line style: prompt depth." if len(depths) > 1 else "."), png)


def all_figures(report: Report) -> tuple[list[Figure], list[str]]:
    figs, notes = [], []
    for fig in (robust_vs_eps(report),):
        if fig:
            figs.append(fig)
    fig, note = params_vs_robust(report)
    if fig:
        figs.append(fig)
    if note:
        notes.append(note)
    fig = transfer_heatmap(report)
    if fig:
        figs.append(fig)
    elif len(report.variants) > 1:
        notes.append("Transfer matrix: not in these results (run without --no-transfer to get it).")
    fig = prompt_length_plot(report)
    if fig:
        figs.append(fig)
    from reports import frontier

    if frontier.has_robust_variants(report):
        figs.append(frontier.frontier_plot(report))
    if report.ablation is not None:
        fig, note = ablation_plot(report.ablation)
        if fig:
            figs.append(fig)
        if note:
            notes.append(note)
    return figs, notes
