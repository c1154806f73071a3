"""Aggregates from the per-sample store: accuracies with Wilson intervals, attack success, paired tests,
validity flags and the transfer matrix. Everything here is recomputed from rows, never stored by hand.
"""

from __future__ import annotations

import itertools
import json
import math

import pandas as pd

from attacks import ATTACKS, Threat, specs
from robustbench_ofa.stats import paired_mcnemar, wilson_interval

#: Thresholds of the validity flags (documented in the report).
VANISHING_GRAD = 1e-10
#: "Near 0" for the large-eps check: it flags when the 95 % Wilson lower bound of its robust accuracy is
#: above this. Why 10 %: the L-inf ball of eps 0.5 holds, for every image, the all-grey image (every pixel
#: may move to 0.5), so only samples whose answer the image cannot change should survive a strong attack;
#: a share above 1 in 10, with 95 % confidence, is either gradient masking or text-decided answers (the
#: breakdown says which). The lower bound, not the point estimate, so a few survivors among few samples
#: (1 of 8) do not fire it.
LARGE_EPS_MAX_ACC = 0.1
NONDETERMINISM_TOL = 1e-5


def _acc(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n) if n else (0.0, 1.0)
    return {"k": int(k), "n": int(n), "acc": (k / n) if n else math.nan, "ci_low": lo, "ci_high": hi}


def clean_table(clean: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (variant, task), g in clean.groupby(["variant", "task"], sort=False):
        rows.append({"variant": variant, "task": task, **_acc(int(g.correct.sum()), len(g)),
                     "score": float(g.score.mean()) if "score" in g else math.nan})
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

    Validity (``attacks.text.validity``: the generated benchmark's oracle, antonyms, ``--protect``), over
    the attacked samples: ``rejected_successes`` candidates the checks rejected on which the model would
    have been wrong (a success an unchecked attack could have reported); ``rejected_samples`` samples with
    at least one; ``rejected_share`` = samples not fooled whose only successes were rejected / (those +
    successful): the share of would-be successes that were relabellings, not robustness failures. NaN
    where the rows predate the checks (NULL ``rejected_successes``).

    ``no_valid_edit``: attacked samples not fooled on which the attack had nothing valid to try (every
    candidate it generated was rejected, or it generated none): their accuracy under attack is no evidence
    of robustness. ``rejected_<check>``: distinct candidates each check rejected (``CHECK_ORDER``).
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
        rejected = (pd.to_numeric(attacked["rejected_successes"], errors="coerce") if "rejected_successes" in attacked
                    else pd.Series(math.nan, index=attacked.index))
        known = rejected.notna().any() or not len(attacked)
        rescued = int(((attacked.adv_correct == 1) & (rejected > 0)).sum())
        valid = (pd.to_numeric(attacked["valid_candidates"], errors="coerce") if "valid_candidates" in attacked
                 else pd.Series(math.nan, index=attacked.index))
        by_check = _rejected_by_check(attacked)
        rows.append({**dict(zip(["variant", "task", "attack", "norm", "eps_label"], key)),
                     "successful": len(ok), "failed": failed, "skipped": skipped,
                     "cascaded": int(g.status.isin(["cascade", "inherited"]).sum()),
                     "original_acc": (n - skipped) / n if n else math.nan,
                     "acc_under_attack": failed / n if n else math.nan,
                     "attack_success_rate": len(ok) / len(attacked) if len(attacked) else math.nan,
                     "avg_perturbed_word_pct": float(pct), "avg_queries":
                     float(attacked.queries.mean()) if len(attacked) else math.nan,
                     "rejected_successes": int(rejected.sum()) if known else math.nan,
                     "rejected_samples": int((rejected > 0).sum()) if known else math.nan,
                     "rejected_share": rescued / (rescued + len(ok)) if known and rescued + len(ok) else math.nan,
                     "attacked": len(attacked),
                     "no_valid_edit": int(((attacked.adv_correct == 1) & (valid == 0)).sum())
                     if valid.notna().any() else math.nan,
                     **{f"rejected_{name}": n for name, n in by_check.items()}})
    out = pd.DataFrame(rows)
    # a check that rejected nothing in one row is 0 there, not missing (it ran)
    cols = [c for c in out.columns if c.startswith("rejected_") and c[9:] in CHECK_ORDER]
    return out.fillna({c: 0 for c in cols}).astype({c: int for c in cols}) if len(out) else out


#: Successful adversarial texts shown per (task, variant, attack, budget): a seeded random sample.
TEXT_SUCCESSES = 3


def text_successes(res: pd.DataFrame, samples: pd.DataFrame, k: int = TEXT_SUCCESSES,
                   seed: int = 0) -> pd.DataFrame:
    """Successful adversarial texts next to their originals, at most ``k`` per (task, variant, attack, budget),
    drawn at random with ``seed`` from the samples the attack fooled (sorted by uid first, so the draw does
    not depend on the order rows were stored in): rates alone do not show whether a success kept the
    question (issue 32), the texts do."""
    import random

    cols = ["task", "variant", "attack", "eps_label", "uid", "original", "adversarial", "clean_pred", "adv_pred"]
    if "adv_text" not in res or not len(res):
        return pd.DataFrame(columns=cols)
    won = res[res.norm.isin([Threat.TEXT.value, Threat.LINF_TEXT.value]) & (res.status == "attacked")
              & (res.adv_correct == 0) & res.adv_text.notna()]
    texts = ({(t, u): x for t, u, x in zip(samples.task, samples.uid, samples.text)}
             if len(samples) and "text" in samples else {})
    rows = []
    for key, g in won.groupby(["task", "variant", "attack", "eps_label"], sort=False):
        g = g.sort_values("uid")
        picked = sorted(random.Random(f"{seed}|{'|'.join(key)}").sample(range(len(g)), min(k, len(g))))
        for r in g.iloc[picked].itertuples():
            rows.append(dict(zip(cols, (*key, r.uid, texts.get((r.task, r.uid), ""), r.adv_text, r.clean_pred,
                                        r.adv_pred))))
    return pd.DataFrame(rows, columns=cols)


#: The validity checks in the order the gate applies them (``attacks.text.validity.checks_for``).
CHECK_ORDER = ("oracle", "antonym", "cohyponym", "protect", "pos", "sense")


def _rejected_by_check(attacked: pd.DataFrame) -> dict[str, int]:
    """Candidates each validity check rejected, summed over the attacked samples (``rejected_candidates``
    JSON)."""
    totals: dict[str, int] = {}
    for cell in attacked["rejected_candidates"].dropna() if "rejected_candidates" in attacked else ():
        for name, n in json.loads(cell).items():
            totals[name] = totals.get(name, 0) + int(n)
    order = {name: i for i, name in enumerate(CHECK_ORDER)}
    return dict(sorted(totals.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def worst_case_table(res: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy per (variant, task, norm, eps): every attack must fail (AutoAttack's rule)."""
    flags = robust_flags(res).reset_index()
    keys = ["variant", "task", "norm", "eps_label"]
    # the task metric under attack (CIDEr-D of captions, IoU of boxes, answer credit): per sample the lowest
    # score any attack reached (a sample no attack ran on keeps its clean score), then the mean
    if {"adv_score", "clean_score"} <= set(res.columns):
        scores = res.assign(score=res.adv_score.fillna(res.clean_score)).groupby([*keys, "uid"], sort=False).score.min()
        scores = scores.groupby(level=keys, sort=False).mean()
    else:  # results without scores (hand-made frames)
        scores = pd.Series(dtype=float)
    rows = []
    for key, g in flags.groupby(keys, sort=False):
        eps = float(res[(res.norm == key[2]) & (res.eps_label == key[3])].eps.iloc[0])
        rows.append({**dict(zip(keys, key)), "eps": eps,
                     **{f"robust_{k}": v for k, v in _acc(int(g.adv_correct.sum()), len(g)).items()},
                     "robust_score": float(scores.get(key, math.nan))})
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


def clean_at_chance(row, chance: float) -> str | None:
    """The ``clean-at-chance`` flag's detail for a closed-answer clean-table row, or None when it is fine.

    Rule: clean accuracy (the point estimate k / n) at or below chance, 1 / number of answers; 0 % is
    always below. A model that guesses is broken (NaN or untrained weights, the wrong checkpoint), or is
    scored against the wrong answer set or metric, and then every robustness number is meaningless.
    Why not an interval rule (e.g. the Wilson upper bound below chance + a margin): it could never fire
    at small n, and a 0 % run must always be flagged, whatever n. Nor does the point estimate fire on
    working models at the sizes that matter: at n = 96 a VE model at the embedded zoo's text-only level
    (65 %) lands at or below 1/3 with probability 3e-10 (binomial), a VQA model at 54 % at or below 1/22
    with 3e-26. The detail carries the interval and n so a reader can judge a small run.
    """
    if not row.n or row.acc > chance + 1e-12:
        return None
    return (f"clean accuracy {row.acc:.1%} [95% CI {row.ci_low:.1%}, {row.ci_high:.1%}] on n = {int(row.n)} is at "
            f"or below chance {chance:.1%}: a broken model, the wrong answer set or the wrong metric?")


def large_eps_not_broken(acc: float, n: float | None, detail: str) -> str | None:
    """The flag's detail when the large-eps check's robust accuracy is not near 0, else None.

    With the sample count (``large_eps_n``): when the 95 % Wilson lower bound exceeds LARGE_EPS_MAX_ACC.
    Stores written before the count was recorded: when the point estimate exceeds it (the old rule)."""
    if n:
        k, n = round(acc * n), int(n)
        lo, hi = wilson_interval(k, n)
        if lo <= LARGE_EPS_MAX_ACC:
            return None
        return f"not driven near 0: the 95% CI's lower bound {lo:.0%} is above {LARGE_EPS_MAX_ACC:.0%} ({detail})"
    return f"accuracy {acc:.0%} at a very large eps ({detail})" if acc > LARGE_EPS_MAX_ACC else None


#: One-sided level of the transfer flag (Bonferroni over the sources of a target).
TRANSFER_FLAG_ALPHA = 0.05


def transfer_beats_white_box(res: pd.DataFrame, transfer: pd.DataFrame | None) -> list[dict]:
    """Per target variant, task and L-inf eps: do images crafted on another variant (e.g. the finetuned
    twin) fool, among the transfer samples every white-box attack on the target missed (its survivors),
    significantly more than a second white-box attempt does? The transferred image lies in the same ball,
    so a white-box attack that keeps missing it is not following the target's gradient: masked gradients.

    Why a test and not "one sample or more": a 10-step attack from a random start leaves borderline
    survivors (e.g. grounding boxes at IoU 0.51), and any further attempt, transferred or not, tips a few
    of them; five sources are five more attempts. The control is the diagonal of the transfer matrix (the
    target's own PGD images crafted again in the transfer run); per source, an exact one-sided McNemar test
    of "source fooled, own images did not" against the reverse on the survivors (without a diagonal, the
    own attempt counts as fooling none), Bonferroni over the sources at ``TRANSFER_FLAG_ALPHA``: with no
    diagonal five survivors fooled by one source fire it, with one, five more than the own images fooled."""
    if transfer is None or not len(transfer) or not len(res):
        return []
    from scipy.stats import binom

    white = [s.name for s in specs(modality="image") if s.white_box]
    wb = res[(res.norm == Threat.LINF.value) & res.attack.isin(white) & (res.clean_correct == 1)]
    missed = {k: int(v) for k, v in wb.groupby(["variant", "task", "eps_label", "uid"]).adv_correct.min().items()}
    rows = transfer[transfer.target_clean_correct == 1]
    out = []
    for (tgt, task, label), g in rows.groupby(["target", "task", "eps_label"], sort=False):
        g = g[[missed.get((tgt, task, label, u), 0) == 1 for u in g.uid]]  # the white-box survivors
        if not len(g):
            continue
        own = g[g.source == tgt]
        own_fooled = set(own[own.adv_correct == 0].uid)
        survivors = set(g.uid)
        sources = [s for s in dict.fromkeys(g.source) if s != tgt]
        best = None
        for src in sources:
            fooled = set(g[(g.source == src) & (g.adv_correct == 0)].uid)
            b, c = len(fooled - own_fooled), len(own_fooled - fooled)
            p = float(binom.sf(b - 1, b + c, 0.5)) if b else 1.0
            p = min(1.0, p * len(sources))
            if best is None or p < best[0]:
                best = (p, src, len(fooled), b)
        if best is None or best[0] >= TRANSFER_FLAG_ALPHA:
            continue
        p, src, k, b = best
        control = (f"its own PGD images, crafted again, fooled {len(own_fooled)}" if len(own)
                   else "no second white-box attempt to compare with")
        out.append({"variant": tgt, "task": task, "norm": Threat.LINF.value, "eps_label": label,
                    "flag": "transfer-beats-white-box",
                    "detail": f"images crafted on {src} fooled {k} of the {len(survivors)} transfer sample(s) every "
                              f"white-box attack on {tgt} missed ({control}; one-sided McNemar p = {p:.2g}, "
                              f"Bonferroni over {len(sources)} source(s))"})
    return out


def validity_flags(res: pd.DataFrame, clean: pd.DataFrame, checks: pd.DataFrame,
                   transfer: pd.DataFrame | None = None) -> pd.DataFrame:
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
    # a black-box image attack runs after the white-box ones (cascade), so what it fools they all missed;
    # transferred images are judged by their own test with a control (``transfer_beats_white_box``)
    black = [s.name for s in specs(modality="image") if not s.white_box and not s.needs_sources]
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
    large_n = {(r.variant, r.task): float(r["value"]) for _, r in checks.iterrows() if r["name"] == "large_eps_n"}
    for _, r in checks.iterrows():
        if r["name"] == "large_eps_robust_acc":
            detail = large_eps_not_broken(float(r["value"]), large_n.get((r.variant, r.task)), str(r.detail))
            if detail:
                add(r.variant, r.task, Threat.LINF.value, "", "large-eps-not-broken", detail)
        if r["name"] == "nondeterminism" and r["value"] > NONDETERMINISM_TOL:
            add(r.variant, r.task, "", "", "non-deterministic-forward", f"two forward passes differ by {r['value']:.2e}")
        if r["name"] == "nonfinite_outputs" and r["value"] > 0:
            add(r.variant, r.task, "", "", "non-finite-outputs",
                f"{r.detail} (NaN/inf weights?): predictions are arbitrary, every number here is meaningless")
        if r["name"] == "chance_level" and ctab is not None and (r.variant, r.task) in ctab.index:
            detail = clean_at_chance(ctab.loc[(r.variant, r.task)], float(r["value"]))
            if detail:
                add(r.variant, r.task, "", "", "clean-at-chance", detail)
    flags += transfer_beats_white_box(res, transfer)
    return pd.DataFrame(flags, columns=["variant", "task", "norm", "eps_label", "flag", "detail"])


def transfer_matrix(transfer: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each target on adversarial images crafted on each source (target's clean-correct samples)."""
    rows = []
    for key, g in transfer.groupby(["task", "attack", "eps_label", "source", "target"], sort=False):
        ok = g[g.target_clean_correct == 1]
        rows.append({**dict(zip(["task", "attack", "eps_label", "source", "target"], key)),
                     **_acc(int(ok.adv_correct.sum()), len(ok))})
    return pd.DataFrame(rows)


#: The sample properties the breakdown tables group by (columns of the store's ``samples`` table).
BREAKDOWN_BY = ("label", "decided_by")


def breakdown_table(res: pd.DataFrame, clean: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Clean and worst-case robust accuracy per group of samples: per true label (closed-answer tasks) and
    per what decides the answer ("text" or "image", where the data knows: the generated benchmark's VE
    "maybe" templates are decided by the text alone).

    Why: an aggregate can hide that every survivor is of one label or one kind, e.g. a prompt-tuned VE model
    keeping exactly its text-decided "maybe" samples under attack. A grouping with one value for a task
    (every VQA sample image-decided) is left out, since it repeats the task's own row.
    """
    cols = ["variant", "task", "by", "value", "norm", "eps_label", "eps", "k", "n", "acc", "ci_low", "ci_high"]
    if not len(clean) or not len(samples):
        return pd.DataFrame(columns=cols)
    info = samples.drop_duplicates(["task", "uid"]).set_index(["task", "uid"])
    robust = robust_flags(res).reset_index() if len(res) else pd.DataFrame()
    eps_of = res.groupby(["norm", "eps_label"]).eps.first().to_dict() if len(res) else {}
    rows = []
    for by in BREAKDOWN_BY:
        if by not in info.columns:
            continue
        values = info[by].dropna()
        tasks = [t for t, g in values.groupby(level="task") if g.nunique() > 1]
        frames = [("clean", clean.rename(columns={"correct": "ok"}))]
        if len(robust):
            frames.append(("robust", robust.rename(columns={"adv_correct": "ok"})))
        for kind, frame in frames:
            f = frame[frame.task.isin(tasks)].join(values.rename("value"), on=["task", "uid"]).dropna(subset=["value"])
            keys = ["variant", "task", "value"] if kind == "clean" else ["variant", "task", "norm", "eps_label", "value"]
            for key, g in f.groupby(keys, sort=False):
                k = dict(zip(keys, key))
                norm, label = k.get("norm", "clean"), k.get("eps_label", "")
                rows.append({"variant": k["variant"], "task": k["task"], "by": by, "value": k["value"], "norm": norm,
                             "eps_label": label, "eps": 0.0 if kind == "clean" else float(eps_of[(norm, label)]),
                             **_acc(int(g.ok.sum()), len(g))})
    return pd.DataFrame(rows, columns=cols)


def explain_flags(flags: pd.DataFrame, res: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Say so in a flag's detail when its robust survivors are all (or mostly) text-decided samples.

    A flag about a budget (``eps_label``) looks at that budget; one about a whole norm at its largest budget.
    Survivors whose answer the text alone decides are robust to any image perturbation by construction, so
    they explain e.g. "robust accuracy not driven near 0" without any gradient masking.
    """
    if not len(flags) or not len(res) or "decided_by" not in samples.columns:
        return flags
    decided = samples.drop_duplicates(["task", "uid"]).set_index(["task", "uid"]).decided_by
    robust = robust_flags(res).reset_index()
    robust = robust[robust.adv_correct.astype(bool)].join(decided, on=["task", "uid"])
    out = flags.copy()
    for i, f in out.iterrows():
        if not f.norm or f.norm == "clean":
            continue
        rows = robust[(robust.variant == f.variant) & (robust.task == f.task) & (robust.norm == f.norm)]
        if not len(rows):
            continue
        label = f.eps_label or _largest_label(res, f.variant, f.task, f.norm)
        at = rows[rows.eps_label == label]
        known = at.decided_by.dropna()
        if not len(known):
            continue
        text = int((known == "text").sum())
        if text == len(at):
            out.at[i, "detail"] = (f"{f.detail}; explained by text-decided samples: all {text} robust samples at "
                                   f"{label} are decided by the text alone")
        elif text * 2 > len(at):
            out.at[i, "detail"] = f"{f.detail}; {text} of {len(at)} robust samples at {label} are text-decided"
    return out


def _largest_label(res: pd.DataFrame, variant: str, task: str, norm: str) -> str:
    g = res[(res.variant == variant) & (res.task == task) & (res.norm == norm)]
    return str(g.loc[g.eps.idxmax(), "eps_label"]) if len(g) else ""
