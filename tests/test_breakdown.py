"""Breakdowns of clean and robust accuracy by true label and by what decides the answer (text or image)."""

from __future__ import annotations

import json

import pandas as pd
from conftest import colour_samples

from attacks import AttackParams
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.evaluation import aggregate as agg
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.outputs import compute, format_summary, write_aggregates
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore

VQA = colour_samples(16, 5)
VE = syn.generate("ve", "train", 40, syn.SceneConfig(image_size=32))


def test_the_generator_marks_text_decided_samples():
    kinds = {s.meta["kind"]: s.meta["decided_by"] for s in syn.generate("ve", "train", 200)}
    assert kinds["undecidable"] == kinds["depth"] == "text"
    assert {kinds[k] for k in kinds if k not in ("undecidable", "depth")} == {"image"}
    text = [s for s in syn.generate("ve", "train", 200) if s.meta["decided_by"] == "text"]
    assert text and all(s.label == "maybe" for s in text)  # decided by the words, whatever the picture


def test_breakdowns_reach_the_tables_summary_terminal_and_report(colour_model, tmp_path):
    model, task = colour_model
    cfg = EvalConfig(attacks=["fgsm"], tasks=["vqa", "ve"], eps=parse_eps_list("8/255,64/255"), n_samples=40,
                     batch_size=8, params=AttackParams(steps=2), beam=1, transfer=False, sanity_samples=2)
    store = ResultsStore(tmp_path / "results.sqlite")
    store.bind(cfg.settings())
    data = {"vqa": VQA, "ve": VE}
    ev = Evaluator(cfg, store, lambda n: LoadedVariant(n, model, task.tokenizer, 32),
                   lambda t, n: data[t][:n], progress=False)
    ev.run(["a"])
    tables = compute(store)
    b = tables["breakdown"]
    assert set(b[b.task == "ve"].by) == {"label", "decided_by"}
    assert set(b[(b.task == "ve") & (b.by == "decided_by")].value) == {"text", "image"}
    assert set(b[(b.task == "ve") & (b.by == "label")].value) == {"yes", "no", "maybe"}
    assert "decided_by" not in set(b[b.task == "vqa"].by)  # unknown for hand-made samples: no grouping
    # the groups partition the task's samples: counts add up to the clean and the worst-case rows
    clean = tables["clean"].set_index(["variant", "task"])
    worst = tables["worst_case"].set_index(["variant", "task", "norm", "eps_label"])
    for (task_name, by, norm, label), g in b.groupby(["task", "by", "norm", "eps_label"]):
        ref = clean.loc[("a", task_name)] if norm == "clean" else worst.loc[("a", task_name, norm, label)]
        k, n = (ref.k, ref.n) if norm == "clean" else (ref.robust_k, ref.robust_n)
        assert (g.k.sum(), g.n.sum()) == (k, n), (task_name, by, norm, label)
    out = tmp_path / "out"
    out.mkdir()
    write_aggregates(store, out, {})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["breakdown"]
    # the checks behind the flags are in the summary too (the EOT attack's stochastic modules among them)
    names = {c["name"] for c in summary["checks"]}
    assert {"stochastic_modules", "large_eps_robust_acc", "large_eps_n"} <= names, names
    assert len(pd.read_csv(out / "breakdown.csv")) == len(b)
    assert "BY WHAT DECIDES THE ANSWER" in format_summary(tables)

    from reports.build import load_report
    from reports.html import render

    html = render(load_report(tmp_path, allow_incomplete=True))
    assert "Accuracy by sample group" in html and "text-decided" in html


def test_a_flag_explained_by_text_decided_survivors_says_so():
    rows = []
    for i, decided in enumerate(["text"] * 3 + ["image"] * 3):
        fooled = decided == "image"  # every image-decided sample is broken, every text-decided one survives
        rows.append(dict(variant="v", task="ve", attack="pgd", norm="linf", eps_label="64/255", eps=64 / 255,
                         uid=f"u{i}", status="attacked", clean_correct=1, adv_correct=int(not fooled)))
    res = pd.DataFrame(rows)
    samples = pd.DataFrame({"task": "ve", "uid": [f"u{i}" for i in range(6)],
                            "decided_by": ["text"] * 3 + ["image"] * 3})
    flags = pd.DataFrame([{"variant": "v", "task": "ve", "norm": "linf", "eps_label": "", "flag": "large-eps-not-broken",
                           "detail": "accuracy 50%"}])
    out = agg.explain_flags(flags, res, samples)
    assert "explained by text-decided samples: all 3 robust samples at 64/255" in out.detail[0]
    samples["decided_by"] = ["image"] * 6  # the same survivors, now image-decided: nothing to explain
    assert agg.explain_flags(flags, res, samples).detail[0] == "accuracy 50%"
