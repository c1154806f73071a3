"""Regression gate: unchanged runs pass, a weakened variant trips it, mismatches are refused, maths by hand,
and (same weights) six samples turned wrong fail the per-sample gate and are named by --explain."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sqlite3

import pytest
import torch
from conftest import colour_samples

from attacks import AttackParams
from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.regress import check_comparable, compare, numbers_from_results

SAMPLES = colour_samples(32, 21)


def _evaluate(model, task, out, eps="64/255"):
    cfg = EvalConfig(attacks=["pgd"], tasks=["vqa"], eps=parse_eps_list(eps), n_samples=32, batch_size=16,
                     params=AttackParams(steps=5), beam=1, transfer=False, sanity_samples=2)
    store = ResultsStore(out / "results.sqlite")
    store.bind({**cfg.settings(), "models": ["colour"], "data": "colour-32"})
    Evaluator(cfg, store, lambda n: LoadedVariant(n, model, task.tokenizer, 32), lambda t, n: SAMPLES[:n],
              progress=False).run(["colour"])
    store.set_meta("run", {"data": "colour-32", "variants": {"colour": {"sha256": {"model": _weights_sha(model)}}}})
    store.set_meta("complete", True)
    return out


def _weights_sha(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def baseline_run(colour_model, tmp_path_factory):
    model, task = colour_model
    out = _evaluate(model, task, tmp_path_factory.mktemp("base"))
    base = tmp_path_factory.mktemp("bl") / "baseline.json"
    assert main(["regress", "--update", "--baseline", str(base), "--results", str(out)]) == 0
    return out, base


def test_unchanged_model_passes_exactly(colour_model, baseline_run, tmp_path, capsys):
    model, task = colour_model
    _, base = baseline_run
    again = _evaluate(model, task, tmp_path)
    assert main(["regress", "--baseline", str(base), "--results", str(again), "--exact"]) == 0
    assert "0 failure(s)" in capsys.readouterr().out


def test_weakened_variant_trips_the_gate(colour_model, baseline_run, tmp_path, capsys):
    model, task = colour_model
    _, base = baseline_run
    weak = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in weak.named_parameters():
            if "image_proj" in name or "embed_images.conv1" in name:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * 2.0)
    out = _evaluate(weak, task, tmp_path)
    assert main(["regress", "--baseline", str(base), "--results", str(out)]) == 1
    text = capsys.readouterr().out
    assert "REGRESSION" in text and "colour|vqa|clean" in text


def test_mismatched_baselines_are_refused(colour_model, baseline_run, tmp_path, capsys):
    model, task = colour_model
    _, base = baseline_run
    other = _evaluate(model, task, tmp_path, eps="32/255")
    assert main(["regress", "--baseline", str(base), "--results", str(other)]) == 2
    err = capsys.readouterr().err
    assert "baseline mismatch: setting 'eps'" in err and err.count("\n") == 1
    assert main(["regress", "--baseline", str(tmp_path / "none.json"), "--results", str(other)]) == 2


def test_incomplete_runs_are_not_gated(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.set_meta("complete", False)
    with pytest.raises(RobustOFAError, match="incomplete"):
        numbers_from_results(tmp_path)


def test_tolerance_maths_by_hand():
    base = {"settings": {}, "numbers": {"v|t|clean": [80, 100], "v|t|linf|4/255": [50, 100]}}
    run = {"settings": {}, "numbers": {"v|t|clean": [78, 100], "v|t|linf|4/255": [30, 100]}}
    rows = {r.key: r for r in compare(base, run)}
    # pooled p = 0.79, se = sqrt(.79*.21*.02) = 0.05761; z = 0.02/0.05761 = 0.3472 -> p = 0.7285
    assert abs(rows["v|t|clean"].p_value - 0.7285) < 1e-3 and rows["v|t|clean"].status == "ok"
    # pooled p = 0.4, se = sqrt(.4*.6*.02) = 0.06928; z = 2.887 -> p = 0.00389
    assert abs(rows["v|t|linf|4/255"].p_value - 0.00389) < 1e-4
    assert rows["v|t|linf|4/255"].status == "REGRESSION"
    assert compare(base, run, tolerance=0.25)[1].status == "ok"
    assert compare(base, run, exact=True)[0].status == "REGRESSION"
    better = {"settings": {}, "numbers": {"v|t|clean": [95, 100], "v|t|linf|4/255": [50, 100]}}
    assert [r.status for r in compare(base, better)] == ["improvement", "ok"]
    with pytest.raises(RobustOFAError, match="in only one of"):
        check_comparable(base, {"settings": {}, "numbers": {"v|t|clean": [1, 2]}}, "b.json")


def _turn_wrong(src, dst, k: int) -> list[str]:
    """A copy of run ``src`` in which ``k`` clean-correct samples are wrong everywhere (an evaluation change)."""
    shutil.copytree(src, dst)
    db = sqlite3.connect(dst / "results.sqlite")
    with db:
        uids = [u for (u,) in db.execute("SELECT uid FROM clean WHERE correct=1 ORDER BY uid LIMIT ?", (k,))]
        for u in uids:
            db.execute("UPDATE clean SET correct=0, pred='blue?' WHERE uid=?", (u,))
            db.execute("UPDATE results SET clean_correct=0, adv_correct=0 WHERE uid=?", (u,))
    db.close()
    return uids


def test_same_weights_six_flips_fail_and_explain_names_them(baseline_run, tmp_path, capsys):
    out, base = baseline_run
    assert main(["regress", "--baseline", str(base), "--results", str(out)]) == 0
    capsys.readouterr()
    uids = _turn_wrong(out, tmp_path / "flipped", 6)
    assert main(["regress", "--baseline", str(base), "--results", str(tmp_path / "flipped"), "--explain"]) == 1
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("colour|vqa|clean"))
    assert "fixed" in row and "REGRESSION" in row and " 6 " in row
    assert "smallest drop detected with 80% probability" in text
    assert "colour|vqa|clean: 6 sample(s) turned wrong" in text
    for u in uids:
        assert f"- {u}: reference" in text and "clean prediction 'blue?'" in text
    # the decision is stored with the run and the report's regression section shows it, with the power
    record = json.loads((tmp_path / "flipped" / "regression.json").read_text())
    assert record["failed"] and {r["key"]: r["lost"] for r in record["rows"]}["colour|vqa|clean"] == 6
    assert main(["regress", "--baseline", str(base), "--results", str(tmp_path / "flipped"), "--report", "md"]) == 1
    md = (tmp_path / "flipped" / "report.md").read_text()
    assert "## Regression gate" in md and "Regression gate: FAILED" in md and "Detectable regressions" in md
    line = next(x for x in md.splitlines() if x.startswith("| colour\\|vqa\\|clean | fixed"))
    assert "REGRESSION" in line and "| 6 |" in line
    # a float-noise-sized change (one sample) passes the default allowance
    _turn_wrong(out, tmp_path / "one", 1)
    assert main(["regress", "--baseline", str(base), "--results", str(tmp_path / "one")]) == 0
    assert main(["regress", "--baseline", str(base), "--results", str(tmp_path / "one"), "--exact"]) == 1


def test_count_only_baseline_still_loads_and_uses_the_old_test(baseline_run, tmp_path, capsys):
    out, base = baseline_run
    data = json.loads(base.read_text())
    old = {"format": "robust-ofa-baseline/1", "settings": data["settings"], "provenance": data["provenance"],
           "numbers": data["numbers"]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["regress", "--baseline", str(tmp_path / "old.json"), "--results", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: count-only baseline" in text and "less power" in text
    assert "two-proportion test" in text
