"""Adversarial training (``train --adv``): the inner attack touches no weight, no gradient and no BatchNorm
statistic; every tuning method trains adversarially and changes only its trainable tensors; PGD-AT makes
a model measurably more robust than its standard twin; settings are checked, and recorded on the card."""

from __future__ import annotations

import copy
import json
import sqlite3

import pytest
import torch
from conftest import colour_samples

from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.training.adversarial import adversarial_batch
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.loop import train
from robustbench_ofa.tuning import get_method

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

EPS = 8 / 255
ROBUST_EPS = 32 / 255


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("adv", ["pgd", "trades", "fgsm-rs"])
def test_inner_attack_changes_no_weight_gradient_or_batchnorm_statistic(colour_model, adv):
    model, task = colour_model
    model = copy.deepcopy(model)
    model.freeze_batchnorm = False  # BatchNorm would update its statistics in train mode
    model.train()
    before = _state(model)
    batch = task.collate(colour_samples(8, 3))
    cfg = TrainConfig(max_steps=1, adv=adv, adv_eps=EPS, adv_steps=3, adv_ratio=0.5)
    out = adversarial_batch(model, task, batch, cfg, step=0)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # the mode is restored for the outer step
    moved = (out.batch.images - batch.images).flatten(1).abs().amax(1)
    assert out.rows.tolist() == [0, 1, 2, 3] and (moved[:4] > 0).all() and (moved[4:] == 0).all()
    assert float(moved.max()) <= EPS + 1e-6
    assert out.grad_evals == 4 * (1 if adv == "fgsm-rs" else 3)


@pytest.mark.parametrize("method", ["finetune", "prompt", "adapter", "bitfit", "lora"])
def test_every_method_trains_adversarially_and_changes_only_its_trainable_tensors(colour_model, method):
    model, task = colour_model
    model = copy.deepcopy(model)
    get_method(method).apply(model)
    trainable = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}  # tied too
    before = _state(model)
    cfg = TrainConfig(lr=1e-3, batch_size=8, max_steps=2, num_threads=2, adv="pgd", adv_eps=EPS, adv_steps=2)
    result = train(model, {"vqa": task}, {"vqa": colour_samples(16, 4)}, cfg, progress=False)
    after = _state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= trainable
    assert result.grad_evals == 2 * 8 * (1 + 2)  # each step: 8 samples x (2 attack steps + 1 update)


def test_pgd_at_is_more_robust_than_its_standard_twin(colour_model):
    """Same start, same data, same steps; only ``--adv pgd`` differs. PGD-10 at the training eps on 192
    held-out samples, compared per sample (McNemar's exact test). At 32/255 (the colour task resists small
    budgets: the start model keeps 76/96 at 16/255).

    Kernel-proof by size, not by a loose threshold: 40 steps on 96 samples gave p from 1e-16 down to 0.027
    across training seeds and kernel sets (AVX-512, AVX2, portable), 35 vs 18 discordant at worst. At 80
    steps and 192 samples, 12 runs (seeds 1-4 x those three kernel sets) gave PGD-AT 188-192/192 vs
    72-143/192 and p <= 6e-14, so p < 1e-4 holds with nine orders of magnitude to spare, while a twin that
    trained without the inner attack (identical models: no discordant sample, p = 1) fails it."""
    from attacks import AttackParams, run_attack
    from attacks.views import TaskView
    from robustbench_ofa.stats import mcnemar

    base, task = colour_model
    twins = {}
    for adv in ("none", "pgd"):
        model = copy.deepcopy(base)
        get_method("finetune").apply(model)
        at = {} if adv == "none" else {"adv": adv, "adv_eps": ROBUST_EPS, "adv_steps": 3}
        cfg = TrainConfig(lr=2e-3, batch_size=16, max_steps=80, num_threads=2, seed=1, **at)
        train(model, {"vqa": task}, {"vqa": colour_samples(256, 6)}, cfg, progress=False)
        twins[adv] = model.eval()
    batch = task.collate(colour_samples(192, 11))
    robust = {}
    for adv, model in twins.items():
        res = run_attack("pgd", TaskView(model, task, batch), batch.images, ROBUST_EPS, AttackParams(steps=10),
                         list(range(len(batch))))
        robust[adv] = [p.correct for p in task.predict(model, batch, images=res.adv)]
    only_at = sum(a and not s for a, s in zip(robust["pgd"], robust["none"]))
    only_std = sum(s and not a for a, s in zip(robust["pgd"], robust["none"]))
    assert sum(robust["pgd"]) > sum(robust["none"])
    assert mcnemar(only_at, only_std) < 1e-4


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("adv", "pgdx", "training config field 'adv'"),
    ("adv_eps", -0.1, "training config field 'adv_eps'"),
    ("adv_steps", 0, "training config field 'adv_steps'"),
    ("adv_ratio", 0.0, "training config field 'adv_ratio'"),
    ("adv_eps", 8 / 255, "'adv_eps': applies only with adversarial training"),  # would be silently ignored
    ("adv_text", 1, "'adv_text': applies only with adversarial training"),
    ("adv_text", -1, "training config field 'adv_text'"),
])
def test_bad_adversarial_settings_are_refused(field, value, fragment):
    with pytest.raises(RobustOFAError, match=fragment):
        TrainConfig(max_steps=1, **{field: value})


def test_standard_training_config_is_stored_as_before():
    """No adversarial keys unless ``--adv`` is used: recipe hashes and resume keys are unchanged."""
    assert not any(k.startswith("adv") for k in TrainConfig(max_steps=1).to_dict())
    d = TrainConfig(max_steps=1, adv="trades").to_dict()
    assert d["adv"] == "trades" and d["adv_beta"] == 6.0
    assert TrainConfig.from_dict(d) == TrainConfig(max_steps=1, adv="trades")


@pytest.mark.parametrize(("flag", "fragment"), [
    (["--adv", "pgdx"], "--adv"), (["--adv", "pgd", "--adv-eps=-1/255"], "--adv-eps"),
    (["--adv", "pgd", "--adv-steps", "0"], "--adv-steps"),
])
def test_cli_bad_adversarial_settings_are_one_line(tmp_path, capsys, flag, fragment):
    argv = ["train", "tune", "--base", "b", "--method", "prompt", "--task", "ve", "--out", str(tmp_path / "o"),
            "--quiet", *flag]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_cli_tune_adv_records_the_settings_on_the_card(tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train", "pretrain", "--out", str(base), "--task", "ve", "--d-model", "16", "--layers", "1",
                 "--heads", "2", "--ffn-dim", "32", "--resnet-planes", "4", "--image-size", "32", "--steps", "2",
                 "--n", "4", "--eval-n", "2", "--bpe-vocab", "400", "--num-bins", "16", "--batch-size", "2",
                 "--quiet"]) == 0
    out = tmp_path / "prompt-at"
    assert main(["train", "tune", "--base", str(base), "--method", "prompt", "--task", "ve", "--steps", "2", "--n",
                 "4", "--eval-n", "2", "--batch-size", "2", "--adv", "trades", "--adv-eps", "2/255",
                 "--adv-steps", "2", "--quiet", "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["adversarial"] == {"method": "trades", "eps": 2 / 255, "steps": 2, "alpha": 2.5 * (2 / 255) / 2,
                                   "ratio": 1.0, "beta": 6.0}
    assert card["train"]["adv"] == "trades" and card["train_grad_evals"] == 2 * 2 * (1 + 2 + 2)
    assert "adv_text" not in card["train"]  # image-only: the stored keys are those before --adv-text
    out = tmp_path / "prompt-at-text"
    assert main(["train", "tune", "--base", str(base), "--method", "prompt", "--task", "ve", "--steps", "2", "--n",
                 "4", "--eval-n", "2", "--batch-size", "2", "--adv", "pgd", "--adv-text", "1", "--quiet",
                 "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["adversarial"]["text_words"] == 1 and card["adversarial"]["text_candidates"] == 4
    assert card["train"]["adv_text"] == 1


def test_text_perturbation_keeps_protected_words_and_makes_only_typos():
    """Typos on up to WORDS unprotected words; an edit that makes a real word ("left" -> "lift") is
    drawn again, so the question a reader sees keeps its answer."""
    import random

    from attacks.text.budget import edits, words_changed
    from robustbench_ofa.training.adv_text import perturb

    text = "is the large red cube left of the small sphere?"
    protected = frozenset({"large", "red", "cube", "small", "sphere"})
    real = {"lift", "loft", "lest", "he", "she", "thee", "then", "them", "if", "off", "oaf", "it", "in", "us", "si"}
    seen = set()
    for seed in range(200):
        out = perturb(text, 2, protected, real.__contains__, random.Random(seed))
        assert out == perturb(text, 2, protected, real.__contains__, random.Random(seed))  # seeded
        assert 1 <= words_changed(text, out) <= 2
        for old, new in edits(text, out):
            assert not set(old) & protected and not {w.strip("?") for w in new} & real
        seen.add(out)
    assert len(seen) > 50  # the four character operations on the unprotected words
    assert perturb(text, 0, protected, real.__contains__, random.Random(0)) == text
    # a word whose every typo is a real word is left alone
    assert perturb("ab", 1, frozenset(), lambda w: True, random.Random(0)) == "ab"


def test_adv_text_keeps_the_worst_candidate_then_attacks_the_image(colour_model):
    import random

    from attacks.text.budget import words_changed
    from attacks.text.queries import source_ids
    from robustbench_ofa.seeds import sample_seed
    from robustbench_ofa.tasks import TaskBatch
    from robustbench_ofa.training.adv_text import CANDIDATES, perturb, vocabulary_check

    model, task = colour_model
    model = copy.deepcopy(model).train()
    before = _state(model)
    samples = colour_samples(8, 3)
    batch = task.collate(samples)
    cfg = TrainConfig(max_steps=1, adv="pgd", adv_eps=EPS, adv_steps=2, adv_ratio=0.5, adv_text=1, seed=5)
    out = adversarial_batch(model, task, batch, cfg, step=7)
    assert all(torch.equal(before[k], v) for k, v in _state(model).items()) and model.training
    assert all(p.grad is None for p in model.parameters())
    assert [words_changed(s.text, t) for s, t in zip(samples, out.texts)] == [1] * 4 + [0] * 4
    assert torch.equal(out.batch.input_ids, source_ids(task, samples, out.texts))
    assert out.text_queries == 4 * CANDIDATES and out.grad_evals == 4 * 2
    moved = (out.batch.images - batch.images).flatten(1).abs().amax(1)
    assert (moved[:4] > 0).all() and (moved[4:] == 0).all() and float(moved.max()) <= EPS + 1e-6
    # the kept text is the highest-loss candidate (recomputed here from the same seeds)
    is_word = vocabulary_check(task.tokenizer)
    model.eval()
    for r in range(4):
        s = samples[r]
        cands = [perturb(s.text, 1, frozenset(), is_word, random.Random(sample_seed(5, "adv-text", 7, s.uid, k)))
                 for k in range(CANDIDATES)]
        rows = [s] * CANDIDATES
        cb = TaskBatch(rows, source_ids(task, rows, cands), batch.images[[r] * CANDIDATES],
                       batch.targets[[r] * CANDIDATES])
        with torch.no_grad():
            loss = task.loss(model, cb)
        assert out.texts[r] == cands[int(loss.argmax())]


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    from robustbench_ofa.zoo.recipe import micro_recipe

    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


def test_robust_twins_are_built_on_demand_and_reported_on_the_frontier(micro, tmp_path, capsys):
    """Naming ``micro-*-at`` builds them in the built zoo (same base) without changing its folder; the
    report labels them, puts every variant on the frontier and writes the robust-training sentences."""
    from robustbench_ofa.zoo import list_models, zoo_root
    from robustbench_ofa.zoo.recipe import default_recipe

    models = "micro-finetune,micro-finetune-at,micro-prompt-16,micro-prompt-16-at"
    out = tmp_path / "res"
    assert main(["evaluate", "--attack", "pgd", "--model", models, "--task", "ve", "--n-samples", "8",
                 "--batch-size", "4", "--steps", "2", "--no-transfer", "--sanity-samples", "2", "--sanity-steps",
                 "1", "--sanity-restarts", "1", "--home", str(micro), "--out", str(out), "--report", "md",
                 "--quiet"]) == 0
    root = zoo_root(micro, default_recipe())
    cards = {c.name: c for c in list_models(micro)}
    at = cards["micro-prompt-16-at"]
    assert (root / "variants" / "prompt-16-at" / "card.json").is_file() and at.status == "built"
    assert at.adversarial["method"] == "pgd" and at.train_grad_evals == 4 * 4 * (1 + 3)
    assert cards["micro-finetune"].train_grad_evals == 4 * 4 and not cards["micro-finetune"].adversarial
    assert cards["micro-adapter"].status == "built"  # the standard variants are the zoo's, untouched
    report = (out / "report.md").read_text()
    assert "prompt (robust-trained: pgd, eps 4/255, 3 steps)" in report
    assert "Robustness per parameter and per unit of training compute" in report
    assert "### Robust training" in report
    assert "micro-prompt-16-at (" in report and "(standard finetuning," in report
    assert "(robust-trained finetuning," in report
    assert "was not checked: rerun with --protocol strong" in report
    strong = tmp_path / "strong"
    assert main(["evaluate", "--attack", "pgd", "--model", models, "--task", "ve", "--n-samples", "8",
                 "--batch-size", "4", "--steps", "2", "--no-transfer", "--protocol", "strong", "--sanity-samples",
                 "2", "--sanity-steps", "1", "--sanity-restarts", "1", "--home", str(micro), "--out", str(strong),
                 "--report", "md", "--quiet"]) == 0
    report = (strong / "report.md").read_text()
    for twin in ("micro-prompt-16-at", "micro-finetune-at"):  # 8 samples: no gain can be significant
        assert f"ve: {twin} has no significant gain over its standard twin {twin[:-3]}" in report
    db = sqlite3.connect(strong / "results.sqlite")
    sources = dict(db.execute("SELECT variant, COUNT(*) FROM results WHERE attack='twin-transfer' GROUP BY variant"))
    db.close()
    assert set(sources) == {"micro-finetune-at", "micro-prompt-16", "micro-prompt-16-at"}  # not micro-finetune


def _survival_report(transfer_fools: int, flag: str | None = None):
    """A hand-made strong-protocol run on VE at one budget: n = 40, the run's PGD leaves the robust variant
    robust on 30 and its standard twin on 10 (20 discordant pairs); the twin transfer then fools
    ``transfer_fools`` of the robust variant's 30."""
    import pandas as pd

    from reports.model import Report

    rows = []
    for v, robust_n in (("v-at", 30), ("v", 10)):
        fooled_by_transfer = transfer_fools if v == "v-at" else 0
        for i in range(40):
            pgd_ok = int(i < robust_n)
            rows.append(dict(variant=v, task="ve", norm="linf", eps_label="4/255", eps=4 / 255, attack="pgd",
                             uid=f"u{i}", clean_correct=1, adv_correct=pgd_ok, status="attacked"))
            tr_ok = int(pgd_ok and i >= fooled_by_transfer)
            rows.append(dict(variant=v, task="ve", norm="linf", eps_label="4/255", eps=4 / 255,
                             attack="twin-transfer", uid=f"u{i}", clean_correct=1, adv_correct=tr_ok,
                             status="attacked" if pgd_ok else "cascade"))
    flags = pd.DataFrame([{"variant": "v-at", "task": "ve", "norm": "linf", "eps_label": "4/255", "flag": flag,
                           "detail": "x"}] if flag else [], columns=["variant", "task", "norm", "eps_label",
                                                                     "flag", "detail"])
    meta = {"v-at": {"method": "prompt", "base": "b", "hparams": {"length": 16},
                     "adversarial": {"method": "pgd", "eps": 4 / 255, "steps": 3}},
            "v": {"method": "prompt", "base": "b", "hparams": {"length": 16}}}
    return Report(title="t", results_dir=None, generated="", complete=True, tasks=["ve"], variants=["v-at", "v"],
                  variant_meta=meta, reference=None, threats={}, comparisons={},
                  tables={"samples": pd.DataFrame(rows)}, settings={"attacks": ["pgd"], "protocol": "strong"},
                  run={}, flags=flags)


def test_survival_sentences_say_whether_each_gain_survives():
    """The same +50-point gain under PGD: kept when the twin transfer fools nothing, lost when it fools
    the variant's extra survivors, and not claimed when a masking flag stands on the variant."""
    from reports.frontier import survival_sentences

    kept = survival_sentences(_survival_report(0))
    assert kept == ["ve: v-at vs its standard twin v, robust-accuracy gain under the run's own white-box attacks "
                    "-> under the strong protocol, at L-inf 4/255 +50.0 -> +50.0 points (p < 0.001, n = 40): "
                    "survives."]
    lost = survival_sentences(_survival_report(22))  # 8 left robust vs the twin's 10
    assert "+50.0 -> \u22125.0 points" in lost[0] and lost[0].endswith("does not survive.")
    flagged = survival_sentences(_survival_report(0, "transfer-beats-white-box"))
    assert flagged[0].endswith("flagged (transfer-beats-white-box).")
    report = _survival_report(0)
    report.settings["protocol"] = "standard"
    assert "was not checked" in survival_sentences(report)[0]
    report = _survival_report(0)
    report.settings["attacks"] = ["square"]  # no white-box attack of the run's own: no gain to measure
    assert survival_sentences(report) == [
        "Whether the robust-trained variants' gains survive the strong protocol was not checked: the run named "
        "no white-box attack of its own (--attack) to measure the gain with."]
    report = _survival_report(0)  # trained otherwise (tasks, data or settings): not its twin, no sentence
    report.variant_meta["v-at"]["twin_recipe"], report.variant_meta["v"]["twin_recipe"] = "aaaa", "bbbb"
    assert survival_sentences(report) == []
    report.variant_meta["v"]["twin_recipe"] = "aaaa"
    assert len(survival_sentences(report)) == 1


def test_trades_inner_attack_uses_the_clean_text_as_its_reference(colour_model, monkeypatch):
    """With --adv-text, TRADES' inner attack maximises the KL to the prediction on the clean text and
    image (the reference ``trades_term`` trains against), not on the typo'd text."""
    from robustbench_ofa.training import adversarial

    model, task = colour_model
    model = copy.deepcopy(model).train()
    samples = colour_samples(8, 3)
    batch = task.collate(samples)
    seen = {}

    class Spy(adversarial._TradesObjective):
        def __init__(self, view, clean_logits):
            seen["clean"] = clean_logits
            super().__init__(view, clean_logits)

    monkeypatch.setattr(adversarial, "_TradesObjective", Spy)
    cfg = TrainConfig(max_steps=1, adv="trades", adv_eps=EPS, adv_steps=1, adv_ratio=0.5, adv_text=1, seed=5)
    out = adversarial_batch(model, task, batch, cfg, step=7)
    rows = out.rows
    assert not torch.equal(out.batch.input_ids.index_select(0, rows), batch.input_ids.index_select(0, rows))
    model.eval()
    with torch.no_grad():
        want, _ = task.attack_logits(model, batch.input_ids.index_select(0, rows), batch.images.index_select(0, rows),
                                     batch.targets.index_select(0, rows))
        typo, _ = task.attack_logits(model, out.batch.input_ids.index_select(0, rows),
                                     batch.images.index_select(0, rows), batch.targets.index_select(0, rows))
    assert torch.allclose(seen["clean"], want) and not torch.allclose(want, typo)
