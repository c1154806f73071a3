"""Training options whose effect nothing else checked (issue 31): ``train pretrain --arch/--tokenizer/
--random-bin-init/--resnet-layers``, ``--mix sum``, ``--eval-every``, ``--no-bf16``, and what label smoothing,
weight decay and gradient clipping do to a step. Two tiny ``train pretrain`` runs (every option set, none
set) carry the command-line checks; the arithmetic is checked through the trainer's own functions."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize
from safetensors.torch import load_file

from robustbench_ofa.cli import build_parser, main
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.tokenizer import OFATokenizer, train_bpe
from robustbench_ofa.tasks import get_task, instruction, task_names
from robustbench_ofa.training import TrainConfig, train
from robustbench_ofa.training.init import init_bin_embeddings
from robustbench_ofa.training.schedule import make_plan
from robustbench_ofa.zoo.recipe import EMBEDDED

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

SIZE = 32
N_TRAIN, BATCH, STEPS = 4, 2, 4
#: A learning rate so small that 4 AdamW steps move no weight by more than ~1e-5: the saved model still
#: shows its initialisation.
TINY_LR = "1e-6"
#: The small architecture both runs share (OFA's flags; --arch decides everything else).
SMALL = ["--d-model", "16", "--layers", "1", "--heads", "2", "--ffn-dim", "32", "--resnet-planes", "4"]
COMMON = ["--task", "ve,grounding", "--image-size", str(SIZE), "--n", str(N_TRAIN), "--eval-n", "2",
          "--batch-size", str(BATCH), "--steps", str(STEPS), "--lr", TINY_LR, "--quiet"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer folder with sizes no default gives (BPE 350, 12 bins), for ``--tokenizer``."""
    folder = tmp_path_factory.mktemp("given-tokenizer")
    texts = syn.corpus_texts() + [instruction(t, "x") for t in task_names()]
    train_bpe(texts, folder, vocab_size=350, num_bins=12)
    return folder


@pytest.fixture(scope="module")
def optioned(tokenizer_dir, tmp_path_factory) -> Path:
    """``train pretrain`` with every option under test set."""
    out = tmp_path_factory.mktemp("optioned") / "model"
    assert main(["train", "pretrain", "--out", str(out), *COMMON, *SMALL, "--arch", "tiny", "--resnet-layers", "1,2,1",
                 "--tokenizer", str(tokenizer_dir), "--random-bin-init", "--mix", "sum", "--eval-every", "2",
                 "--no-bf16", "--label-smoothing", "0.2", "--weight-decay", "0.3", "--clip", "0.5"]) == 0
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """The same run with none of them (defaults: embedded arch, a trained BPE, smooth bins, alternate)."""
    out = tmp_path_factory.mktemp("plain") / "model"
    assert main(["train", "pretrain", "--out", str(out), *COMMON, *SMALL, "--bpe-vocab", "400",
                 "--num-bins", "16"]) == 0
    return out


def _card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text())


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _bin_rows(weights: dict[str, torch.Tensor], tokenizer: OFATokenizer) -> torch.Tensor:
    """The ``<bin_i>`` rows of the shared token embedding."""
    key = next(k for k in weights if k.endswith("embed_tokens.weight"))
    return weights[key][tokenizer.bin_offset:tokenizer.bin_offset + tokenizer.num_bins]


# --- train pretrain: what each option puts in the model -------------------------------------------------
def test_arch_takes_the_presets_fields_and_the_flags_override_them(optioned, plain):
    tiny, embedded = _config(optioned), _config(plain)
    # fields the flags leave alone come from the named preset: tiny is OFA's (ResNet-50 type, OFA's init,
    # 1024 positions, dropout 0.1), embedded the zoo's
    assert tiny["resnet_type"] == "resnet50" and tiny["init_std"] == 0.02
    assert tiny["max_position_embeddings"] == 1024 and tiny["dropout"] == 0.1
    for field in ("init_std", "max_position_embeddings", "dropout", "resnet_layers"):
        assert embedded[field] == EMBEDDED.model[field]
    for config in (tiny, embedded):  # the size flags win over either preset
        assert (config["d_model"], config["encoder_layers"], config["decoder_ffn_dim"]) == (16, 1, 32)
    assert _card(optioned)["hparams"]["resnet_type"] == "resnet50"


def _resnet_blocks(folder: Path) -> list[int]:
    """Blocks per ResNet stage, counted from the saved weights' names."""
    blocks: dict[int, set[int]] = {}
    for key in load_file(folder / "model.safetensors"):
        found = re.search(r"\.layer([123])\.(\d+)\.", key)
        if found:
            blocks.setdefault(int(found.group(1)), set()).add(int(found.group(2)))
    return [len(blocks[stage]) for stage in (1, 2, 3)]


def test_resnet_layers_sets_the_blocks_of_each_stage(optioned, plain):
    assert _config(optioned)["resnet_layers"] == [1, 2, 1]
    assert _resnet_blocks(optioned) == [1, 2, 1]  # not the tiny preset's ResNet-50 (3, 4, 6)
    assert _resnet_blocks(plain) == EMBEDDED.model["resnet_layers"]


def test_tokenizer_is_used_as_given(optioned, plain, tokenizer_dir):
    given = OFATokenizer.from_pretrained(tokenizer_dir)
    for name in ("vocab.json", "merges.txt"):
        assert (optioned / name).read_bytes() == (tokenizer_dir / name).read_bytes()
        assert (plain / name).read_bytes() != (tokenizer_dir / name).read_bytes()
    saved = OFATokenizer.from_pretrained(optioned)
    assert saved.num_bins == given.num_bins == 12 and _config(optioned)["vocab_size"] == given.vocab_size
    assert not (optioned / "tokenizer").exists()  # nothing trained
    trained = OFATokenizer.from_pretrained(plain / "tokenizer")  # the default: a BPE trained on the data
    assert trained.num_bins == 16 and _config(plain)["vocab_size"] == trained.vocab_size != given.vocab_size


def _initial(folder: Path, tokenizer: OFATokenizer) -> torch.Tensor:
    """The bin rows OFA's random initialisation gives the saved config (the command seeds 0 first)."""
    torch.manual_seed(0)
    return _bin_rows(OFAModel(OFAConfig(**_config(folder))).state_dict(), tokenizer)


def test_random_bin_init_keeps_ofas_random_rows_instead_of_the_smooth_ones(optioned, plain):
    for folder, random_init in ((optioned, True), (plain, False)):
        tokenizer = OFATokenizer.from_pretrained(folder)
        rows = _bin_rows(load_file(folder / "model.safetensors"), tokenizer)
        expected = _initial(folder, tokenizer)
        if not random_init:
            torch.manual_seed(0)
            model = OFAModel(OFAConfig(**_config(folder)))
            init_bin_embeddings(model, tokenizer, seed=0)
            smooth = _bin_rows(model.state_dict(), tokenizer)
            assert not torch.allclose(smooth, expected, atol=1e-3)  # the two initialisations differ
            expected = smooth
        torch.testing.assert_close(rows, expected, rtol=0, atol=1e-4)  # TINY_LR: trained rows ~ initial


# --- --mix sum ---------------------------------------------------------------------------------------
def test_mix_sum_steps_take_a_batch_of_every_task(optioned, plain):
    tasks = 2
    assert _card(optioned)["train"]["mix"] == "sum" and _card(plain)["train"]["mix"] == "alternate"
    # sum: each step one batch of each task (2 samples x 2 tasks), an epoch is 2 steps; alternate: one task
    assert _card(optioned)["train_grad_evals"] == STEPS * BATCH * tasks
    assert _card(plain)["train_grad_evals"] == STEPS * BATCH
    last = {folder: [r for r in _log(folder) if "loss" in r][-1] for folder in (optioned, plain)}
    assert last[optioned]["epoch"] == STEPS / (N_TRAIN / BATCH)
    assert last[plain]["epoch"] == STEPS / (tasks * N_TRAIN / BATCH)


@pytest.fixture(scope="module")
def tok(tokenizer_dir) -> OFATokenizer:
    return OFATokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def data() -> dict[str, list]:
    scene = syn.SceneConfig(image_size=SIZE)
    return {t: syn.generate(t, "train", 4, scene) for t in ("grounding", "ve")}


def _tasks(tok: OFATokenizer, names=("grounding", "ve")) -> dict:
    return {t: get_task(t, tok, SIZE, beam=1) for t in names}


def _model(tok: OFATokenizer, dropout: float = 0.0) -> OFAModel:
    config = OFAConfig(vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                       resnet_layers=[1, 1, 1], resnet_base_planes=4, max_position_embeddings=128, dropout=dropout)
    torch.manual_seed(0)
    return OFAModel(config)


def _cfg(**kw) -> TrainConfig:
    """One step, the whole data in each batch, a constant learning rate (no warm-up)."""
    return TrainConfig(**{**dict(lr=1e-2, max_steps=1, batch_size=4, warmup_steps=0, decay="constant", seed=0), **kw})


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_mix_sum_step_gradient_is_the_mean_of_every_tasks_loss_gradient(tok, data):
    """A summed step's gradient: each task's token-mean loss, averaged over the tasks (what ``MixedPlan``
    plans and the trainer runs), not one task's."""
    tasks, start = _tasks(tok), _model(tok)
    cfg = _cfg(mix="sum", clip_norm=0.0)
    seen: list[str] = []
    model = copy.deepcopy(start)
    train(model, tasks, data, cfg, progress=False, callbacks=[lambda done, record: seen.append(record["task"])])
    assert seen == ["grounding+ve"]
    got = _grads(model)

    def task_grads(names) -> dict[str, torch.Tensor]:
        ref = copy.deepcopy(start).train()
        plan = make_plan({t: len(s) for t, s in data.items()}, cfg.batch_size, cfg.seed, cfg.mix)
        loss = 0.0
        for planned in plan.step(0):
            if planned.task in names:
                batch = tasks[planned.task].collate([data[planned.task][i] for i in planned.indices])
                per_sample = tasks[planned.task].loss(ref, batch, label_smoothing=cfg.label_smoothing)
                loss = loss + per_sample.sum() / batch.targets.ne(ref.config.pad_token_id).sum() / len(names)
        loss.backward()
        return _grads(ref)

    expected = task_grads(("grounding", "ve"))
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-6)
    one = task_grads(("ve",))
    assert any(not torch.allclose(got[n], one[n], rtol=1e-2, atol=1e-4) for n in one)


# --- --eval-every, --no-bf16 ---------------------------------------------------------------------------------
def test_eval_every_evaluates_during_training(optioned, plain):
    evals = [r for r in _log(optioned) if "eval" in r]
    assert [r["step"] for r in evals] == list(range(2, STEPS + 1, 2))
    assert all(set(r["eval"]) == {"ve", "grounding"} and r["eval"]["ve"]["n"] == 2 for r in evals)
    assert evals[-1]["eval"] == _card(optioned)["clean"]  # the last one is the card's clean evaluation
    assert _card(optioned)["train"]["eval_every"] == 2
    assert not [r for r in _log(plain) if "eval" in r]  # default: only the final evaluation, on the card


def test_evaluating_during_training_does_not_change_the_weights(tok, data):
    """With dropout on, an evaluation that touched the random stream or left the model in eval mode would
    change the next steps; ``eval_every`` is not part of a run's resume key, so it must not."""
    tasks = _tasks(tok)
    weights = []
    for every in (0, 1):
        model = _model(tok, dropout=0.3)
        evals = {t: s[:2] for t, s in data.items()} if every else None
        train(model, tasks, data, _cfg(max_steps=3, batch_size=2, eval_every=every), eval_data=evals, progress=False)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_no_bf16_turns_autocast_off_on_cuda(optioned, plain):
    from robustbench_ofa.commands.train import _train_config
    from robustbench_ofa.training.loop import _autocast

    assert _card(optioned)["train"]["bf16"] is False and _card(plain)["train"]["bf16"] is None
    parser = build_parser()
    for flags, on in (([], True), (["--no-bf16"], False)):
        args = parser.parse_args(["train", "pretrain", "--out", "x", "--device", "cuda", *flags])
        cfg = _train_config(args, 1e-3, 10)
        assert cfg.use_bf16 is on
        with warnings.catch_warnings():  # torch warns that CUDA is missing; the context is never entered
            warnings.simplefilter("ignore")
            assert isinstance(_autocast(cfg), torch.autocast) is on


# --- label smoothing, weight decay, clipping ---------------------------------------------------------
def test_the_command_line_passes_smoothing_decay_and_clipping_to_the_trainer(optioned, plain):
    for folder, (smoothing, decay, clip) in ((optioned, (0.2, 0.3, 0.5)), (plain, (0.1, 0.01, 1.0))):
        recipe = _card(folder)["train"]
        assert (recipe["label_smoothing"], recipe["weight_decay"], recipe["clip_norm"]) == (smoothing, decay, clip)


def _token_mean_ce(model: OFAModel, task, samples: list, smoothing: float) -> float:
    """Token-mean cross-entropy of the teacher-forced targets, smoothed by torch's own definition."""
    batch = task.collate(samples)
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        enc = task.encode(model, batch.input_ids, batch.images)
        start = torch.full_like(batch.targets[:, :1], model.config.decoder_start_token_id)
        logits, _ = model.decoder(torch.cat([start, batch.targets[:, :-1]], dim=1), enc)
    return float(F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(),
                                 ignore_index=model.config.pad_token_id, label_smoothing=smoothing))


def test_label_smoothing_is_the_smoothed_cross_entropy(tok, data):
    tasks = _tasks(tok, ["ve"])
    start = randomize(_model(tok))  # further from uniform predictions than a fresh model's
    logged = {}
    for smoothing in (0.0, 0.3):
        losses: list[float] = []
        train(copy.deepcopy(start), tasks, {"ve": data["ve"]}, _cfg(label_smoothing=smoothing), progress=False,
              callbacks=[lambda done, record, out=losses: out.append(record["loss"])])
        logged[smoothing] = losses[0]
        expected = _token_mean_ce(start, tasks["ve"], data["ve"], smoothing)
        assert logged[smoothing] == pytest.approx(expected, abs=1e-4)  # the log rounds to 5 decimals
    assert abs(logged[0.3] - logged[0.0]) > 0.01  # 100x the tolerance: the two definitions are told apart


def test_weight_decay_shrinks_each_decayed_weight_by_lr_times_decay(tok, data):
    """AdamW's decay is decoupled: from the same start and data, a run with decay ``wd`` ends one step at
    ``p - lr wd p`` from the run without, for matrices; biases and norms are never decayed."""
    tasks, start = _tasks(tok), _model(tok)
    lr, wd = 1e-2, 0.5
    runs = {}
    for decay in (0.0, wd):
        model = copy.deepcopy(start)
        train(model, tasks, data, _cfg(lr=lr, weight_decay=decay), progress=False)
        runs[decay] = dict(model.named_parameters())
    initial = dict(start.named_parameters())
    decayed = 0
    for name, p in runs[wd].items():
        if p.grad is None:  # not in this step's graph: AdamW leaves it alone in both runs
            continue
        shift = (p - runs[0.0][name]).detach()
        if p.ndim < 2 or name.endswith(".bias"):
            assert torch.equal(shift, torch.zeros_like(shift)), name
        else:
            torch.testing.assert_close(shift, -lr * wd * initial[name].detach(), rtol=1e-3, atol=1e-7)
            decayed += 1
    assert decayed > 10


def test_clipping_bounds_the_gradient_norm_of_the_step(tok, data):
    tasks, start = _tasks(tok), _model(tok)
    norms = {}
    for clip in (0.0, 0.05):
        model, records = copy.deepcopy(start), []
        train(model, tasks, data, _cfg(clip_norm=clip), progress=False,
              callbacks=[lambda done, record, out=records: out.append(record)])
        applied = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in _grads(model).values()]))
        norms[clip] = (records[0]["grad_norm"], float(applied))
    before, applied = norms[0.0]
    assert applied == pytest.approx(before, rel=1e-3) and before > 0.05  # off: the step used the whole gradient
    logged, clipped = norms[0.05]
    assert logged == before and clipped == pytest.approx(0.05, rel=1e-4)  # the log keeps the norm before clipping
