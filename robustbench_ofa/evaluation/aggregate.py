"""Aggregates from the per-sample store: accuracies with Wilson intervals, attack success, paired tests,
validity flags and the transfer matrix. Everything here is recomputed from rows, never stored by hand.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from attacks import ATTACKS, Threat, specs
from robustbench_ofa.stats import paired_mcnemar, wilson_interval

#: Thresholds of the validity flags (documented in the report).
VANISHING_GRAD = 1e-10
LARGE_EPS_MAX_ACC = 0.1
NONDETERMINISM_TOL = 1e-5


def _acc(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n) if n else (0.0, 1.0)
    return {"k": int(k), "n": int(n), "acc": (k / n) if n else math.nan, "ci_low": lo, "ci_high": hi}


def clean_table(clean: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (variant, task), g in clean.groupby(["variant", "task"], sort=False):
        rows.append({"variant": variant, "task": task, **_acc(int(g.correct.sum()), len(g))})
    return pd.DataFrame(rows)


def robust_flags(res: pd.DataFrame) -> pd.Series:
    """Per sample (variant, task, norm, eps_label, uid): robust = clean-correct and no attack fooled it.

    A joint threat (norm 'linf+text': image within eps and <= k words) contains the image-only threats at
    eps' <= eps and the text-only ones at k' <= k, so a sample fooled under any of those is not robust under
    it either (with the evaluator's cascade the joint rows already say so; without it, this fold does).
    """
    flags = res.groupby(["variant", "task", "norm", "eps_label", "uid"], sort=False).adv_correct.min().astype(bool)
    joint = res[res.norm == Threat.LINF_TEXT]
    if not len(joint):
        return flags
    fooled = res[(res.clean_correct == 1) & (res.adv_correct == 0)]
    words = pd.to_numeric(fooled["words"], errors="coerce") if "words" in fooled else fooled.eps * math.nan
    for (variant, task, label), g in joint.groupby(["variant", "task", "eps_label"], sort=False):
        eps = float(g.eps.iloc[0])
        k = float(pd.to_numeric(g["words"], errors="coerce").iloc[0]) if "words" in g else math.nan
        contained = (((fooled.norm == Threat.LINF) & (fooled.eps <= eps + 1e-12))
                     | ((fooled.norm == Threat.TEXT) & (words <= k)))
        mask = (fooled.variant == variant) & (fooled.task == task) & contained
        for uid in set(fooled[mask].uid) & set(g.uid):
            flags.loc[(variant, task, Threat.LINF_TEXT.value, label, uid)] = False
    return flags


def attack_table(res: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, task, norm, eps, attack), cumulative over the attacks run before it."""
    rows = []
    keys = ["variant", "task", "norm", "eps_label"]
    for key, g in res.groupby(keys, sort=False):
        order = list(dict.fromkeys(g.attack))
        eps = float(g.eps.iloc[0])
        robust_so_far = None
        for attack in order:
            a = g[g.attack == attack].set_index("uid")
            robust_so_far = a.adv_correct.astype(bool) if robust_so_far is None else \
                robust_so_far & a.adv_correct.astype(bool)
            n = len(a)
            clean_k = int(a.clean_correct.sum())
            robust_k = int(robust_so_far.sum())
            fooled = a[(a.clean_correct == 1) & (a.adv_correct == 0)]
            attacked = a[a.status == "attacked"]
            rows.append({
                **dict(zip(keys, key)), "eps": eps, "attack": attack,
                "clean_acc": clean_k / n if n else math.nan,
                **{f"robust_{k}": v for k, v in _acc(robust_k, n).items()},
                "success_rate": (clean_k - robust_k) / clean_k if clean_k else math.nan,
                "attacked": len(attacked),
                "mean_linf": float(fooled.linf.mean()) if len(fooled) else math.nan,
                "mean_l2": float(fooled.l2.mean()) if len(fooled) else math.nan,
                "grad_evals": int(a.grad_evals.sum()), "queries": int(a.queries.sum()),
                "seconds": float(a.seconds.sum()),
            })
    return pd.DataFrame(rows)


def text_attack_table(res: pd.DataFrame) -> pd.DataFrame:
    """TextAttack's summary per (variant, task, attack, budget) of the text and joint attacks.

    successful / failed: samples this attack attacked and fooled / did not fool; skipped: clean prediction
    already wrong (TextAttack's "skipped"); cascaded: fooled earlier by a contained threat (not attacked
    again, counted as fooled). Original accuracy = 1 - skipped / n; accuracy under attack = failed / n;
    attack success rate = successful / (successful + failed) (TextAttack's definitions, over the samples
    the attack itself attacked); perturbed word % and queries are averaged as TextAttack does (word % over
    successful attacks, queries over attacked samples).
    """
    if "words" not in res:
        return pd.DataFrame()
    text = res[res.norm.isin([Threat.TEXT.value, Threat.LINF_TEXT.value])]
    rows = []
    for key, g in text.groupby(["variant", "task", "attack", "norm", "eps_label"], sort=False):
        attacked = g[g.status == "attacked"]
        ok = attacked[attacked.adv_correct == 0]
        n, failed = len(g), int((attacked.adv_correct == 1).sum())
        skipped = int((g.status == "clean-wrong").sum())
        pct = (ok.words_changed / ok.n_words.clip(lower=1) * 100).mean() if len(ok) else math.nan
        rows.append({**dict(zip(["variant", "task", "attack", "norm", "eps_label"], key)),
                     "successful": len(ok), "failed": failed, "skipped": skipped,
                     "cascaded": int(g.status.isin(["cascade", "inherited"]).sum()),
                     "original_acc": (n - skipped) / n if n else math.nan,
                     "acc_under_attack": failed / n if n else math.nan,
                     "attack_success_rate": len(ok) / len(attacked) if len(attacked) else math.nan,
                     "avg_perturbed_word_pct": float(pct), "avg_queries":
                     float(attacked.queries.mean()) if len(attacked) else math.nan})
    return pd.DataFrame(rows)


def worst_case_table(res: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy per (variant, task, norm, eps): every attack must fail (AutoAttack's rule)."""
    flags = robust_flags(res).reset_index()
    rows = []
    for key, g in flags.groupby(["variant", "task", "norm", "eps_label"], sort=False):
        eps = float(res[(res.norm == key[2]) & (res.eps_label == key[3])].eps.iloc[0])
        rows.append({**dict(zip(["variant", "task", "norm", "eps_label"], key)), "eps": eps,
                     **{f"robust_{k}": v for k, v in _acc(int(g.adv_correct.sum()), len(g)).items()}})
    return pd.DataFrame(rows)


def paired_tests(res: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """McNemar's exact test between every pair of variants on the same samples (clean and per eps)."""
    rows = []
    flags = robust_flags(res).sort_index()
    variants = list(dict.fromkeys(clean.variant))
    for task in dict.fromkeys(clean.task):
        for a, b in itertools.combinations(variants, 2):
            ca = clean[(clean.variant == a) & (clean.task == task)].set_index("uid").correct.astype(bool)
            cb = clean[(clean.variant == b) & (clean.task == task)].set_index("uid").correct.astype(bool)
            common = ca.index.intersection(cb.index)
            if len(common):
                rows.append(_pair(a, b, task, "clean", "", math.nan, ca[common], cb[common]))
            for (norm, label), g in res[res.task == task].groupby(["norm", "eps_label"], sort=False):
                try:
                    fa = flags.loc[(a, task, norm, label)]
                    fb = flags.loc[(b, task, norm, label)]
                except KeyError:
                    continue
                common = fa.index.intersection(fb.index)
                rows.append(_pair(a, b, task, norm, label, float(g.eps.iloc[0]), fa[common], fb[common]))
    return pd.DataFrame(rows)


def _pair(a, b, task, norm, label, eps, xa, xb) -> dict:
    r = paired_mcnemar(list(xa.values), list(xb.values))
    n = len(xa)
    return {"task": task, "norm": norm, "eps_label": label, "eps": eps, "variant_a": a, "variant_b": b, "n": n,
            "acc_a": float(xa.mean()) if n else math.nan, "acc_b": float(xb.mean()) if n else math.nan,
            "diff": float(xa.mean() - xb.mean()) if n else math.nan,
            "only_a": r.b, "only_b": r.c, "p_value": r.p_value}


def validity_flags(res: pd.DataFrame, clean: pd.DataFrame, checks: pd.DataFrame) -> pd.DataFrame:
    """Warnings that a number may not mean what it seems (gradient masking and friends)."""
    flags = []
    worst = worst_case_table(res) if len(res) else pd.DataFrame()
    ctab = clean_table(clean).set_index(["variant", "task"]) if len(clean) else None

    def add(variant, task, norm, label, name, detail):
        flags.append({"variant": variant, "task": task, "norm": norm, "eps_label": label, "flag": name,
                      "detail": detail})

    for key, g in res[res.status == "attacked"].groupby(["variant", "task", "attack"], sort=False):
        grads = g.first_grad.dropna()
        if len(grads) and (grads < VANISHING_GRAD).mean() > 0.5:
            add(key[0], key[1], "", "", "vanishing-gradients",
                f"{key[2]}: input gradient ~0 on {(grads < VANISHING_GRAD).mean():.0%} of attacked samples")
    # a black-box image attack runs after the white-box ones (cascade), so what it fools they all missed
    black = [s.name for s in specs(modality="image") if not s.white_box]
    sq = res[res.attack.isin(black) & (res.status == "attacked") & (res.adv_correct == 0)]
    for key, g in sq.groupby(["variant", "task", "norm", "eps_label", "attack"], sort=False):
        add(*key[:4], "black-box-beats-white-box",
            f"{ATTACKS.get(key[4]).display} fooled {len(g)} sample(s) every white-box attack missed")
    for key, g in worst.groupby(["variant", "task", "norm"], sort=False):
        accs = list(g.sort_values("eps").robust_acc)
        if any(b > a + 1e-12 for a, b in zip(accs, accs[1:])):
            add(*key, "", "non-monotone-in-eps", "robust accuracy rises with a larger eps")
        if ctab is not None:
            c = ctab.loc[(key[0], key[1])].acc
            if any(x > c + 1e-12 for x in accs):
                add(*key, "", "robust-above-clean", f"robust accuracy exceeds clean accuracy {c:.3f}")
    for _, r in checks.iterrows():
        if r["name"] == "large_eps_robust_acc" and r["value"] > LARGE_EPS_MAX_ACC:
            add(r.variant, r.task, Threat.LINF.value, "", "large-eps-not-broken",
                f"accuracy {r['value']:.0%} at a very large eps ({r.detail})")
        if r["name"] == "nondeterminism" and r["value"] > NONDETERMINISM_TOL:
            add(r.variant, r.task, "", "", "non-deterministic-forward", f"two forward passes differ by {r['value']:.2e}")
    return pd.DataFrame(flags, columns=["variant", "task", "norm", "eps_label", "flag", "detail"])


def transfer_matrix(transfer: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each target on adversarial images crafted on each source (target's clean-correct samples)."""
    rows = []
    for key, g in transfer.groupby(["task", "attack", "eps_label", "source", "target"], sort=False):
        ok = g[g.target_clean_correct == 1]
        rows.append({**dict(zip(["task", "attack", "eps_label", "source", "target"], key)),
                     **_acc(int(ok.adv_correct.sum()), len(ok))})
    return pd.DataFrame(rows)
