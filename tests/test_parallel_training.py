"""Data-parallel training (torchrun, gloo on CPU): the global batch is the recipe, its split an execution
detail. One process at batch 32 and two processes x micro-batch 8 x 2 accumulation steps take the same
steps (losses within 1e-5 relative over 20 steps, weights within float tolerance); frozen parameters get
no gradient and stay out of DDP's buckets; a killed rank resumes with any world size (exactly with the
same one); a rank with other weights is refused before the first step; a split that does not divide the
batch is refused in one line; a study run by two processes equals the same study in one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import launcher

from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.training.parallel import StepSplit

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "workers" / "ddp_train.py"
#: Two tasks (grounding's 4 bin tokens, VE's 1 answer token: the token normalisation is global per task
#: batch), 20 steps at batch 32 on 64 samples per task: 10 batches each, every epoch reshuffled.
BASE = {"tasks": ["ve", "grounding"], "n": 64, "steps": 20, "batch": 32}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def _run(args: dict, nproc: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*launcher(nproc), str(WORKER), json.dumps(args)], env=_env(), capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "weights.pt", weights_only=True)


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> str:
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.models.tokenizer import train_bpe
    from robustbench_ofa.tasks import instruction, task_names

    folder = tmp_path_factory.mktemp("tok")
    train_bpe(syn.corpus_texts() + [instruction(t, "x") for t in task_names()], folder, vocab_size=400, num_bins=16)
    return str(folder)


# ---------------------------------------------------------------------------------------------------
# The split itself


@pytest.mark.parametrize("batch, world, micro", [(32, 1, None), (32, 2, 8), (32, 1, 8), (48, 3, 4), (12, 4, 1)])
def test_every_position_of_a_global_batch_runs_once(batch, world, micro):
    split = StepSplit(batch, world, micro)
    for n in (batch, batch - 1, 5, 1):  # full batches and the short last batch of an epoch
        seen = [i for rank in range(world) for a, b in split.chunks(n, rank) for i in range(a, b)]
        assert sorted(seen) == list(range(n))
        for rank in range(world):
            chunks = split.chunks(n, rank)
            assert len(chunks) == split.accumulation and all(b - a <= split.micro_batch for a, b in chunks)
    assert split.micro_batch * split.accumulation * world == batch


@pytest.mark.parametrize("batch, world, micro, words", [
    (30, 1, 8, "--micro-batch-size 8 x 1 process(es) does not divide --batch-size 30"),
    (32, 3, None, "--batch-size 32 does not split over 3 processes"),
    (32, 2, 32, "--micro-batch-size 32 x 2 process(es) does not divide --batch-size 32"),
])
def test_a_split_that_does_not_divide_the_batch_is_refused(batch, world, micro, words):
    with pytest.raises(RobustOFAError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StepSplit(batch, world, micro)


def test_the_command_refuses_a_non_dividing_split_in_one_line_before_any_work(capsys, monkeypatch, tmp_path):
    argv = ["train", "tune", "--base", str(tmp_path / "no-such-base"), "--method", "finetune", "--task", "ve",
            "--out", str(tmp_path / "out"), "--batch-size", "30", "--micro-batch-size", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "accumulation steps = batch / (micro-batch x world size)" in err, err
    monkeypatch.setenv("WORLD_SIZE", "3")  # what torchrun sets: 32 samples over 3 processes
    assert main(argv[:-4] + ["--batch-size", "32"]) == 2
    assert "does not split over 3 processes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["grounding", "ve", "vqa", "caption"])
def test_target_tokens_counted_without_images_equal_what_collate_gives(task_tok, name):
    """A split step normalises by tokens counted before its micro-batches run (no images built): that
    count must be collate's, for every task, including a hand-written caption longer than the task's
    target limit and a VQA question with one answer (the trainer also checks it at every split step)."""
    from PIL import Image

    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.data.types import Sample
    from robustbench_ofa.tasks import get_task

    task = get_task(name, task_tok, 32, beam=1)
    samples = syn.generate(name, "train", 6, syn.SceneConfig(image_size=32))
    odd = Image.new("RGB", (37, 211), "purple")
    if name == "caption":
        samples.append(Sample("long", "caption", odd, captions=[" ".join(["a purple striped very tall box"] * 12)]))
    if name == "vqa":  # one answer per question (the generator gives ten); the set's first answer
        samples.append(Sample("odd", "vqa", odd, text="what is it?", answers=[task.answers[0]]))
    pad = task_tok.pad_token_id
    for part in (samples, samples[:1], samples[-1:]):
        assert task.target_tokens(part) == int(task.collate(part).targets.ne(pad).sum())


# ---------------------------------------------------------------------------------------------------
# Same model whatever the split


def test_two_processes_with_accumulation_take_the_steps_of_one(tok, tmp_path):
    """1 process x batch 32, 2 processes x micro-batch 8 x 2 accumulation steps, and 1 process x micro-batch
    8 x 4: per-step losses (the whole global batch's, as logged) within 1e-5 relative, weights within float
    tolerance. Dropout off: the split changes which process draws which mask, never the data or the loss.

    What it catches (each tried on a deliberately broken trainer): token counts not summed over the ranks
    (each rank normalising by its own tokens) failed at step 3 (5.88666 vs 5.88683, 3e-5 relative); DDP's
    average left unscaled (half the gradient) failed at step 4 (4e-5 relative)."""
    runs = {"one": ({}, 1), "two": ({"micro": 8}, 2), "accumulate": ({"micro": 8}, 1)}
    for name, (extra, nproc) in runs.items():
        _run({**BASE, "tok": tok, "method": "finetune", "out": str(tmp_path / name), **extra}, nproc)
    ref, ref_w = _result(tmp_path / "one"), _weights(tmp_path / "one")
    assert len(ref["losses"]) == 20 and ref["execution"]["world_size"] == 1
    for name in ("two", "accumulate"):
        res, w = _result(tmp_path / name), _weights(tmp_path / name)
        assert res["execution"]["micro_batch_size"] == 8
        assert res["execution"]["accumulation_steps"] == (2 if name == "two" else 4)
        assert res["grad_evals"] == ref["grad_evals"] == 20 * 32
        for step, (a, b) in enumerate(zip(ref["losses"], res["losses"]), 1):
            assert abs(a - b) <= 1e-5 * abs(a), f"{name}: step {step} loss {b} vs {a}"
        for key in ref_w:
            # AdamW's update is gradient / sqrt(second moment): summation-order noise on a gradient that is
            # zero in exact arithmetic (attention key biases) moves such a weight by up to ~lr x 1e-3
            assert torch.allclose(ref_w[key].float(), w[key].float(), rtol=1e-4, atol=1e-4), key


def test_frozen_parameters_get_no_gradient_and_stay_out_of_ddps_buckets(tok, tmp_path):
    """Prompt tuning under torchrun: no frozen parameter holds a gradient on any rank, the frozen weights
    are bit-identical to the base, and DDP's buckets hold exactly the trainable bytes."""
    out = tmp_path / "prompt"
    _run({**BASE, "steps": 4, "tok": tok, "method": "prompt", "hparams": {"length": 4}, "micro": 8,
          "out": str(out)}, 2)
    for rank in (0, 1):
        assert torch.load(out / f"rank{rank}.pt", weights_only=True)["frozen_grads"] == []
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.models.tokenizer import OFATokenizer

    t = OFATokenizer.from_pretrained(tok)
    torch.manual_seed(0)
    base = OFAModel(OFAConfig(vocab_size=t.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                              decoder_ffn_dim=32, resnet_layers=[1, 1, 1], resnet_base_planes=4,
                              max_position_embeddings=128, dropout=0.0)).state_dict()
    trained, initial = _weights(out), torch.load(out / "rank0.pt", weights_only=True)["initial"]
    assert all(torch.equal(trained[k], v) for k, v in base.items())  # every base weight, BatchNorm included
    assert initial and all(not torch.equal(trained[k], v) for k, v in initial.items())  # the prompts trained


def test_ddp_buckets_hold_only_the_trainable_parameters(tmp_path, model):
    import torch.distributed as dist

    from robustbench_ofa.distributed import Dist
    from robustbench_ofa.training.parallel import wrap
    from robustbench_ofa.tuning import get_method

    get_method("lora").apply(model)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    assert 0 < trainable < frozen
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = wrap(model, Dist(world=1, backend="gloo"), torch.device("cpu"))
        assert ddp._get_ddp_logging_data()["total_parameter_size_bytes"] == trainable
    finally:
        dist.destroy_process_group()


def test_activation_checkpointing_trains_the_same_weights(tok, tmp_path):
    """Recomputing every layer and ResNet stage in backward, with dropout on (its masks replayed): the
    same weights, bit for bit, in one process."""
    common = {**BASE, "steps": 6, "tok": tok, "method": "finetune", "dropout": 0.1}
    _run({**common, "out": str(tmp_path / "plain")})
    _run({**common, "out": str(tmp_path / "ckpt"), "ac": True})
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _result(tmp_path / "ckpt")["execution"]["activation_checkpointing"] is True


def test_training_batchnorm_is_per_micro_batch(tok, tmp_path):
    """Pretraining trains BatchNorm: every micro-batch's forward is one BatchNorm update (its own batch
    statistics, as OFA's per-GPU batches), so rank 0's counters read steps x accumulation, not steps; the
    card says so. Tuning methods freeze BatchNorm: nothing of it moves (see the prompt test above)."""
    out = tmp_path / "pretrain"
    _run({**BASE, "steps": 3, "tok": tok, "micro": 8, "out": str(out)}, 2)
    execution = _result(out)["execution"]
    assert execution["batchnorm"] == "per micro-batch" and execution["accumulation_steps"] == 2
    buffers = torch.load(out / "rank0.pt", weights_only=True)["buffers"]
    counters = [v for k, v in buffers.items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 3 * 2 for c in counters)


# ---------------------------------------------------------------------------------------------------
# Faults


def test_a_killed_rank_resumes_with_any_world_size(tok, tmp_path):
    """Checkpoints every 5 steps, dropout on; rank 1 is killed at step 7. The same command resumes from
    step 5 and ends with the uninterrupted run's weights bit for bit (each rank's random state restored);
    one process resumes the same checkpoint and finishes (its dropout masks are new)."""
    common = {**BASE, "steps": 10, "batch": 16, "tok": tok, "method": "prompt", "hparams": {"length": 4},
              "dropout": 0.1, "ckpt": 5, "micro": 4}
    _run({**common, "out": str(tmp_path / "full")}, 2)
    for name, nproc in (("same", 2), ("one", 1)):
        killed = _run({**common, "out": str(tmp_path / name), "kill_at": 7}, 2, check=False)
        assert killed.returncode != 0 and (tmp_path / name / "checkpoint.pt").is_file()
        _run({**common, "out": str(tmp_path / name)}, nproc)
        assert _result(tmp_path / name)["resumed_from"] == 5
    full, same, one = (_weights(tmp_path / n) for n in ("full", "same", "one"))
    assert all(torch.equal(full[k], same[k]) for k in full)
    logged = [json.loads(line)["step"] for line in (tmp_path / "same" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 11))  # records past the checkpoint were dropped and written again
    assert any(not torch.equal(full[k], one[k]) for k in full if "prompt" in k)


def test_a_rank_with_other_weights_is_refused_before_the_first_step(tok, tmp_path):
    proc = _run({**BASE, "steps": 2, "tok": tok, "method": "finetune", "micro": 8, "perturb": True,
                 "out": str(tmp_path / "bad")}, 2, check=False)
    assert proc.returncode != 0
    assert "train: rank 1 has other weights than rank 0" in proc.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


# ---------------------------------------------------------------------------------------------------
# The command line and study files under torchrun

#: Runs the CLI with the micro recipe as the default zoo (as tests/test_distributed.py does).
ENTRY = """
from robustbench_ofa.zoo import recipe
_micro = recipe.micro_recipe()
recipe.default_recipe = lambda: _micro
from robustbench_ofa.cli import main
raise SystemExit(main())
"""
STUDY = """
[study]
name = "ddp"
[bases.b]
model = "micro-base"
[variants.ft]
base = "b"
method = "finetune"
task = "ve"
data = "synthetic:downstream_train:32"
eval-data = "none"
batch-size = 16
micro-batch-size = 4
max-steps = 6
[variants.prompt]
base = "b"
method = "prompt"
task = "ve"
data = "synthetic:downstream_train:32"
eval-data = "none"
batch-size = 8
max-steps = 6
hparams = {dropout = 0.0}
[evaluate]
attack = "pgd"
task = "ve"
n-samples = 8
batch-size = 4
steps = 3
eps = "8/255"
report = ""
no-transfer = true
sanity-samples = 4
sanity-steps = 3
sanity-restarts = 1
"""


def _cli(entry: Path, args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    proc = subprocess.run([*launcher(nproc), str(entry), *args], env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_study_run_by_two_processes_equals_the_same_study_in_one(tmp_path):
    """`study plan` shows each variant's split for the world size; `study run` under torchrun tunes every
    variant with DDP (finetune: micro-batch 4 x 2 accumulation steps x 2 processes; prompt: 4 per process)
    and evaluates sharded, in one process group. Dropout is off, so the variants equal one process's within
    float tolerance, the cards record the split, and every evaluation number agrees within one sample."""
    from robustbench_ofa.models.checkpoint_io import load_state_file
    from robustbench_ofa.tuning.variant import TENSOR_FILE

    entry = tmp_path / "micro_cli.py"
    entry.write_text(ENTRY)
    study = tmp_path / "ddp.toml"
    study.write_text(STUDY)
    home = ["--set", f"study.home={json.dumps(str(tmp_path / 'home'))}"]
    plan = _cli(entry, ["study", "plan", str(study), *home, "--world-size", "2"]).stdout
    assert "global batch 16 = micro-batch 4 x 2 accumulation step(s) x 2 process(es)" in plan
    assert "global batch 8 = micro-batch 4 x 1 accumulation step(s) x 2 process(es)" in plan
    for name, nproc in (("one", 1), ("two", 2)):
        _cli(entry, ["study", "run", str(study), *home, "--out", str(tmp_path / name)], nproc)
    for variant, split in (("ft", (2, 4, 2)), ("prompt", (2, 4, 1))):
        cards = [json.loads((tmp_path / n / "variants" / variant / "card.json").read_text()) for n in ("one", "two")]
        assert cards[0]["train"] == cards[1]["train"]  # the recipe: the split is not part of it
        ex = cards[1]["execution"]
        assert (ex["world_size"], ex["micro_batch_size"], ex["accumulation_steps"]) == split
        assert cards[0]["execution"]["world_size"] == 1
        tensors = [load_state_file(tmp_path / n / "variants" / variant / TENSOR_FILE) for n in ("one", "two")]
        assert tensors[0].keys() == tensors[1].keys() and tensors[0]
        for key in tensors[0]:
            assert torch.allclose(tensors[0][key].float(), tensors[1][key].float(), rtol=1e-4, atol=1e-4), key
    # The variants differ by float summation order (1e-7), so a borderline sample could flip on some CPU:
    # the same rows, every number within one sample.
    rows = [{(r["variant"], r["task"], r["attack"], r["eps_label"]): r for r in
             json.loads((tmp_path / n / "evaluate" / "summary.json").read_text())["attacks"]} for n in ("one", "two")]
    assert rows[0].keys() == rows[1].keys() and rows[0]
    for key, a in rows[0].items():
        b = rows[1][key]
        assert a["robust_n"] == b["robust_n"] and abs(a["robust_k"] - b["robust_k"]) <= 1, key
        assert abs(a["clean_acc"] - b["clean_acc"]) <= 1 / a["robust_n"] + 1e-9, key



def test_a_micro_batch_that_does_not_fit_on_the_gpu_names_the_options_to_lower(tok, monkeypatch):
    """CUDA's out-of-memory error inside a micro-batch becomes one line naming --micro-batch-size and
    --activation-checkpointing (simulated: this machine has no GPU; the trainer's handling is the same)."""
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.models.tokenizer import OFATokenizer
    from robustbench_ofa.tasks import get_task
    from robustbench_ofa.training import TrainConfig, train

    t = OFATokenizer.from_pretrained(tok)
    model = OFAModel(OFAConfig(vocab_size=t.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                               decoder_ffn_dim=32, resnet_layers=[1, 1, 1], resnet_base_planes=4,
                               max_position_embeddings=128))
    task = get_task("ve", t, 32, beam=1)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(task, "loss", out_of_memory)
    config = TrainConfig(lr=1e-3, max_steps=1, batch_size=8, micro_batch_size=4)
    with pytest.raises(RobustOFAError, match=r"out of GPU memory at a micro-batch of 4 \(step 1, ve\); lower "
                                             r"--micro-batch-size .* or add --activation-checkpointing"):
        train(model, {"ve": task}, {"ve": syn.generate("ve", "train", 8, syn.SceneConfig(image_size=32))}, config,
              progress=False)


def test_pretrain_under_torchrun_shares_rank_zeros_tokenizer(tmp_path):
    """`train pretrain` under torchrun: rank 0 trains the BPE and writes it, the other rank reads it (the
    weight check would refuse ranks with different vocabularies), rank 0 writes the model and its card."""
    out = tmp_path / "pre"
    args = ["-m", "robustbench_ofa", "train", "pretrain", "--out", str(out), "--task", "ve,grounding", "--n-train", "16",
            "--d-model", "16", "--layers", "1", "--heads", "2", "--ffn-dim", "32", "--resnet-layers", "1,1,1",
            "--resnet-planes", "4", "--image-size", "32", "--bpe-vocab", "400", "--num-bins", "16", "--steps", "2",
            "--batch-size", "8", "--micro-batch-size", "2", "--eval-data", "none", "--quiet"]
    proc = subprocess.run([*launcher(2), *args], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert card["execution"]["world_size"] == 2 and card["execution"]["accumulation_steps"] == 2
    assert card["execution"]["batchnorm"] == "per micro-batch" and (out / "tokenizer" / "vocab.json").is_file()
    assert proc.stdout.count("pretrained") == 1  # rank 0 alone prints


def test_an_ablation_grid_under_torchrun_writes_its_table_once(tmp_path):
    """`train tune` with a comma list trains every grid point with DDP; rank 0 alone writes each run's
    result and the table (two ranks writing the same files would race on their temporary names)."""
    entry = tmp_path / "micro_cli.py"
    entry.write_text(ENTRY)
    out = tmp_path / "grid"
    proc = _cli(entry, ["train", "tune", "--base", "micro-base", "--method", "finetune", "--task", "ve",
                        "--data", "synthetic:downstream_train:16", "--eval-data", "none", "--lr", "1e-3,2e-3",
                        "--steps", "2", "--batch-size", "8", "--micro-batch-size", "2", "--home",
                        str(tmp_path / "home"), "--out", str(out), "--quiet"], 2)
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["lr"] for r in rows] == [1e-3, 2e-3]
    for run in ("lr-0.001", "lr-0.002"):
        card = json.loads((out / "runs" / run / "card.json").read_text())
        assert card["execution"]["world_size"] == 2 and card["execution"]["accumulation_steps"] == 2
    assert proc.stdout.count("ablation: 2 runs") == 1
