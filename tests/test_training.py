"""The trainer: learning, schedules, atomic resumable checkpoints, clean evaluation, ablation grids, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from robustbench_ofa.cli import main
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.synthetic import SceneConfig
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.tokenizer import train_bpe
from robustbench_ofa.tasks import get_task, instruction, task_names
from robustbench_ofa.training import TrainConfig, evaluate_clean, train
from robustbench_ofa.training import checkpoint as ckpt_mod
from robustbench_ofa.training.ablation import expand_grid, parse_grid, run_grid, run_id
from robustbench_ofa.training.init import init_bin_embeddings
from robustbench_ofa.training.schedule import BatchPlan, lr_factor
from robustbench_ofa.tuning import get_method
from robustbench_ofa.zoo.recipe import EMBEDDED

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

SIZE = 32
SCENE = syn.SceneConfig(image_size=SIZE)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = syn.corpus_texts() + [instruction(t, "x") for t in task_names()]
    return train_bpe(texts, tmp_path_factory.mktemp("tok"), vocab_size=400, num_bins=16)


@pytest.fixture(scope="module")
def data():
    return {t: syn.generate(t, "train", 6, SCENE) for t in ("grounding", "ve")}


def _model(tok, seed: int = 0, dropout: float = 0.1) -> OFAModel:
    cfg = OFAConfig(vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                    resnet_layers=[1, 1, 1], resnet_base_planes=4, max_position_embeddings=128, dropout=dropout)
    torch.manual_seed(seed)
    return OFAModel(cfg)


def _tasks(tok, names=("grounding", "ve")):
    return {t: get_task(t, tok, SIZE, beam=1) for t in names}


def _cfg(**kw) -> TrainConfig:
    base = dict(lr=3e-3, max_steps=6, batch_size=4, warmup_steps=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


# --- learning -------------------------------------------------------------------------------------


def test_train_runs_with_its_thread_count_and_restores_the_callers(tok, data):
    """``num_threads`` sets the reduction order of the training's CPU kernels; it must not leak into what
    runs next in the process (before, every test after the first training ran with that training's
    count whatever OMP_NUM_THREADS said)."""
    seen = []
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    model = _model(tok, dropout=0.0)
    hook = model.encoder.register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))
    train(model, _tasks(tok, ["ve"]), {"ve": data["ve"][:4]}, _cfg(max_steps=1, num_threads=other), progress=False)
    hook.remove()
    assert seen and set(seen) == {other}
    assert torch.get_num_threads() == before


def test_training_reduces_the_loss_and_logs(tok, data, tmp_path):
    model = _model(tok, dropout=0.0)
    ve = {"ve": data["ve"][:4]}
    result = train(model, _tasks(tok, ["ve"]), ve, _cfg(max_steps=30, lr=1e-2, log_every=5), out_dir=tmp_path,
                   progress=False)
    log = _log(tmp_path)
    assert result.steps == 30 and [r["step"] for r in log] == [5, 10, 15, 20, 25, 30]
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert {"lr", "grad_norm", "samples_per_s", "epoch"} <= set(log[0])
    assert not model.training  # left in eval mode


def test_only_trainable_parameters_change(tok, data):
    model = _model(tok)
    get_method("prompt", length=2).apply(model)
    before = _weights(model)
    train(model, _tasks(tok), data, _cfg(max_steps=2), progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("_prompt_encoder." in k for k in changed)


def test_batch_plan_interleaves_tasks_and_covers_each_epoch():
    plan = BatchPlan({"grounding": 10, "ve": 10, "vqa": 5}, batch_size=4, seed=3)
    epoch = plan.epoch(0)
    assert plan.steps_per_epoch == len(epoch) == 3 + 3 + 2
    assert [b.task for b in epoch[:3]] == ["grounding", "ve", "vqa"]
    for task, n in (("grounding", 10), ("ve", 10), ("vqa", 5)):
        seen = sorted(i for b in epoch if b.task == task for i in b.indices)
        assert seen == list(range(n))
    assert plan.epoch(1) != epoch and BatchPlan({"grounding": 10, "ve": 10, "vqa": 5}, 4, 3).epoch(0) == epoch
    assert plan[plan.steps_per_epoch] == plan.epoch(1)[0]


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, max_steps=10, warmup_steps=2)
    f = [lr_factor(s, 10, cfg) for s in range(10)]
    assert f[:2] == [0.5, 1.0] and f[2] == 1.0 and all(a > b for a, b in zip(f[2:], f[3:])) and f[-1] > 0
    cos = TrainConfig(lr=1.0, max_steps=10, warmup_steps=0, decay="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 10, cos) == 1.0 and 0.1 < lr_factor(9, 10, cos) < 0.2
    const = TrainConfig(lr=1.0, max_steps=10, warmup_ratio=0.0, decay="constant")
    assert {lr_factor(s, 10, const) for s in range(10)} == {1.0}


def test_train_config_rejects_bad_fields():
    for kwargs, field in ((dict(lr=0), "lr"), (dict(decay="step"), "decay"), (dict(batch_size=0), "batch_size"),
                          (dict(label_smoothing=1.0), "label_smoothing"), (dict(clip_norm=-1), "clip_norm")):
        with pytest.raises(RobustOFAError, match=f"'{field}'"):
            TrainConfig(max_steps=1, **kwargs)
    with pytest.raises(RobustOFAError, match="set 'max_steps' or 'epochs'"):
        TrainConfig()
    assert TrainConfig(epochs=2.0).total_steps(5) == 10
    assert TrainConfig(max_steps=1, device="cuda").use_bf16 and not TrainConfig(max_steps=1).use_bf16
    assert TrainConfig.from_dict(TrainConfig(max_steps=3).to_dict()) == TrainConfig(max_steps=3)


def test_smooth_bin_init_makes_neighbouring_bins_similar(tok):
    model = _model(tok)
    init_bin_embeddings(model, tok, seed=0)
    e = model.get_input_embeddings().weight.detach()[tok.bin_offset:tok.bin_offset + tok.num_bins]
    sim = torch.nn.functional.cosine_similarity(e[:-1], e[1:]).mean()
    far = torch.nn.functional.cosine_similarity(e[: tok.num_bins // 2], e[tok.num_bins // 2:]).mean()
    assert sim > 0.7 and far < 0.1
    assert abs(float(e.std()) - model.config.init_std) < 1e-3


# --- resume and atomic checkpoints ----------------------------------------------------------------


class Crash(Exception):
    pass


def _crash_at(step: int):
    def callback(done: int, record: dict) -> None:
        if done == step:
            raise Crash(f"simulated crash after step {done}")
    return callback


@pytest.mark.parametrize("method", ["finetune", "prompt"])
def test_resume_after_crash_gives_identical_weights(tok, data, tmp_path, method):
    """Dropout on, so the restored RNG state matters as much as the weights and the optimiser."""
    def fresh():
        model = _model(tok, dropout=0.2)
        get_method(method, **({"length": 2} if method == "prompt" else {})).apply(model)
        return model

    cfg = _cfg(max_steps=7, checkpoint_every=2)
    ref = fresh()
    train(ref, _tasks(tok), data, cfg, out_dir=tmp_path / "ref", progress=False)

    crashed = fresh()
    with pytest.raises(Crash):
        train(crashed, _tasks(tok), data, cfg, out_dir=tmp_path / "run", progress=False, callbacks=[_crash_at(5)])
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = fresh()  # a new process would rebuild the model from scratch
    result = train(resumed, _tasks(tok), data, cfg, out_dir=tmp_path / "run", progress=False)
    assert result.resumed_from == 4
    ref_state, new_state = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(ref_state[k], new_state[k]) for k in ref_state)
    steps = [r["step"] for r in _log(tmp_path / "run")]
    assert steps == sorted(steps) and steps[-1] == 7 and len(steps) == len(set(steps))


def test_finished_run_is_not_repeated(tok, data, tmp_path):
    model = _model(tok)
    train(model, _tasks(tok), data, _cfg(checkpoint_every=3), out_dir=tmp_path, progress=False)
    again = _model(tok)
    result = train(again, _tasks(tok), data, _cfg(checkpoint_every=3), out_dir=tmp_path, progress=False)
    assert result.resumed_from == 6
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_checkpoint_of_another_run_is_refused(tok, data, tmp_path):
    train(_model(tok), _tasks(tok), data, _cfg(checkpoint_every=2), out_dir=tmp_path, progress=False)
    with pytest.raises(RobustOFAError, match="different run .*'config'"):
        train(_model(tok), _tasks(tok), data, _cfg(checkpoint_every=2, lr=1e-4), out_dir=tmp_path, progress=False)
    # resume=False starts over
    result = train(_model(tok), _tasks(tok), data, _cfg(checkpoint_every=2, lr=1e-4), out_dir=tmp_path,
                   progress=False, resume=False)
    assert result.resumed_from == 0


def test_crash_mid_write_keeps_the_previous_checkpoint(tok, data, tmp_path, monkeypatch):
    model = _model(tok)
    train(model, _tasks(tok), data, _cfg(max_steps=2, checkpoint_every=2), out_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    good = path.read_bytes()
    real_save = torch.save

    def partial_save(obj, handle, *a, **kw):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt_mod.save_checkpoint(tmp_path, model=model, optimizer=torch.optim.AdamW(model.parameters()), step=9,
                                 total=9, run_key={})
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert path.read_bytes() == good
    assert torch.load(path, weights_only=True)["step"] == 2


def test_corrupt_checkpoint_is_a_one_line_error(tok, data, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(RobustOFAError) as info:
        train(_model(tok), _tasks(tok), data, _cfg(checkpoint_every=2), out_dir=tmp_path, progress=False)
    assert "checkpoint.pt" in str(info.value) and "\n" not in str(info.value)


# --- evaluation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "keys"), [("grounding", {"acc@0.5", "miou"}), ("ve", {"accuracy"}),
                                            ("vqa", {"vqa_accuracy", "accuracy"}), ("caption", {"cider", "bleu4"})])
def test_evaluate_clean_reports_each_tasks_metrics(tok, task, keys):
    model = _model(tok).train()
    samples = syn.generate(task, "val", 3, SCENE)
    metrics = evaluate_clean(model, get_task(task, tok, SIZE, beam=1), samples, batch_size=2)
    assert set(metrics) == keys | {"n"} and metrics["n"] == 3
    assert all(0.0 <= v <= (10.0 if k == "cider" else 1.0) for k, v in metrics.items() if k != "n")
    assert model.training  # mode restored
    with pytest.raises(RobustOFAError, match="no ve samples"):
        evaluate_clean(model, get_task("ve", tok, SIZE), [], 2)


# --- ablation grids -------------------------------------------------------------------------------


def test_parse_grid_types_values_by_the_methods_fields():
    grid = parse_grid("prompt", {"length": "10,16", "depth": "encoder,both", "reparam": "on,off", "lr": "1e-2"})
    assert grid == {"length": [10, 16], "depth": ["encoder", "both"], "reparam": [True, False], "lr": [0.01]}
    assert parse_grid("lora", {"targets": "q_proj+v_proj"}) == {"targets": [["q_proj", "v_proj"]]}
    assert parse_grid("prompt", {"layers": "none,2"}) == {"layers": [None, 2]}
    assert len(expand_grid(grid)) == 8
    assert run_id({"length": 16, "reparam": True, "lr": 0.01}) == "length-16_reparam-on_lr-0.01"
    for specs, fragment in (({"length": "ten"}, "expects an integer"), ({"reparam": "maybe"}, "expects on/off"),
                            ({"size": "3"}, "unknown hyper-parameter 'size'"), ({"length": "4,4"}, "duplicate")):
        with pytest.raises(RobustOFAError, match=fragment):
            parse_grid("prompt", specs)


def test_run_grid_writes_one_table_and_skips_finished_runs(tmp_path):
    calls = []

    def run_one(run_dir, hparams, cfg):
        calls.append((hparams["length"], cfg.lr))
        return {"trainable_params": 100 * hparams["length"], "train_seconds": 0.1,
                "metrics": {"ve": {"accuracy": hparams["length"] / 100, "n": 4}}}

    grid = parse_grid("prompt", {"length": "10,16", "lr": "0.01,0.03"})
    rows = run_grid("prompt", {"depth": "both"}, grid, TrainConfig(max_steps=1), tmp_path, run_one, progress=False)
    assert len(rows) == 4 and calls == [(10, 0.01), (10, 0.03), (16, 0.01), (16, 0.03)]
    csv_lines = (tmp_path / "ablation.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:3] == ["run", "method", "depth"]  # run_one gave no full hparams here
    assert "trainable_params" in csv_lines[0] and "ve/accuracy" in csv_lines[0] and len(csv_lines) == 5
    table = json.loads((tmp_path / "ablation.json").read_text())
    assert table[3]["length"] == 16 and table[3]["lr"] == 0.03 and table[3]["trainable_params"] == 1600
    calls.clear()
    run_grid("prompt", {"depth": "both"}, grid, TrainConfig(max_steps=1), tmp_path, run_one, progress=False)
    assert calls == []  # every run had finished


# --- command line ---------------------------------------------------------------------------------


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robust-ofa: error:") and "\n" not in err
    return err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny base made by ``robust-ofa train pretrain`` (also the end-to-end test of that command)."""
    out = tmp_path_factory.mktemp("pre") / "base"
    argv = ["train", "pretrain", "--out", str(out), "--task", "ve,grounding", "--d-model", "16", "--layers", "1",
            "--heads", "2", "--ffn-dim", "32", "--resnet-planes", "4", "--image-size", "32", "--steps", "3",
            "--n", "4", "--eval-n", "2", "--bpe-vocab", "400", "--num-bins", "16", "--batch-size", "2", "--quiet"]
    assert main(argv) == 0
    return out


def test_cli_pretrain_writes_a_loadable_checkpoint_with_card(pretrained, capsys):
    from robustbench_ofa.zoo import get

    card = json.loads((pretrained / "card.json").read_text())
    assert card["method"] == "pretrain" and set(card["clean"]) == {"ve", "grounding"} and card["image_size"] == 32
    assert not (pretrained / "checkpoint.pt").exists()
    entry = get(str(pretrained))
    assert entry.image_size == 32 and entry.tokenizer.vocab_size == entry.model.config.vocab_size
    # synthetic data defaults to the embedded zoo's scenes, and the card says which were used
    assert SceneConfig(**card["data"]["scene"]) == SceneConfig(image_size=32, **EMBEDDED.scene)


def test_cli_tune_uses_the_scenes_the_base_was_trained_on(pretrained, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(pretrained, base)
    card = json.loads((base / "card.json").read_text())
    card["data"]["scene"] = {**card["data"]["scene"], "max_objects": 1, "max_clutter": 0}
    (base / "card.json").write_text(json.dumps(card))
    out = tmp_path / "bitfit"
    argv = ["train", "tune", "--base", str(base), "--method", "bitfit", "--task", "ve", "--steps", "1", "--n", "2",
            "--eval-n", "2", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    scene = json.loads((out / "card.json").read_text())["data"]["scene"]
    assert scene["max_objects"] == 1 and scene["max_clutter"] == 0 and scene["image_size"] == 32


def test_cli_tune_grid_writes_an_ablation_table(pretrained, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["train", "tune", "--base", str(pretrained), "--method", "prompt", "--task", "ve",
            "--prompt-length", "2,4", "--prompt-depth", "both", "--reparam", "on,off", "--steps", "2", "--n", "4",
            "--eval-n", "2", "--batch-size", "2", "--quiet"]
    assert main(argv + ["--out", str(out)]) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [(r["length"], r["reparam"]) for r in rows] == [(2, True), (2, False), (4, True), (4, False)]
    assert all(r["trainable_params"] > 0 and "ve/accuracy" in r for r in rows)
    assert rows[0]["trainable_params"] != rows[1]["trainable_params"]
    assert rows[0]["depth"] == "both" and rows[0]["dropout"] == 0.2  # defaults are in the table too
    run = out / "runs" / "length-2_depth-both_reparam-on"
    assert (run / "card.json").is_file() and not (run / "variant.json").exists()  # one card per variant


def test_cli_tune_single_run_is_a_loadable_variant(pretrained, tmp_path, capsys):
    from robustbench_ofa.zoo import get

    out = tmp_path / "lora"
    argv = ["train", "tune", "--base", str(pretrained), "--method", "lora", "--task", "ve", "--lora-rank", "2",
            "--steps", "2", "--n", "4", "--eval-n", "2", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "tuned lora variant" in capsys.readouterr().out
    entry = get(str(out))
    assert entry.card.method == "lora" and entry.card.hparams["rank"] == 2 and entry.image_size == 32


def test_cli_rerun_of_a_finished_run_is_not_repeated(pretrained, tmp_path, capsys):
    out = tmp_path / "bitfit"
    argv = ["train", "tune", "--base", str(pretrained), "--method", "bitfit", "--task", "ve", "--steps", "1",
            "--n", "2", "--eval-n", "2", "--batch-size", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    weights = out / "trainable.safetensors"
    os.utime(weights, (0, 0))
    assert main(argv) == 0 and weights.stat().st_mtime == 0  # finished: not trained again
    assert main(argv + ["--no-resume"]) == 0 and weights.stat().st_mtime != 0
    capsys.readouterr()
    assert main(["train", "pretrain", "--out", str(pretrained), "--quiet"]) == 0
    assert "already trained" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--method", "lora", "--prompt-length", "16"], "--prompt-length applies to --method prompt"),
    (["--method", "dropout"], "unknown tuning method 'dropout'"),
    (["--method", "prompt", "--hparam", "length"], "expected KEY=VALUE"),
    (["--method", "prompt", "--prompt-length", "x"], "expects an integer"),
    (["--method", "prompt", "--data", "synthetic:nope"], "unknown synthetic split 'nope'"),
    (["--method", "prompt", "--task", "nlvr"], "unknown task 'nlvr'"),
])
def test_cli_tune_bad_input_is_one_line_and_exit_2(pretrained, tmp_path, capsys, extra, fragment):
    argv = ["train", "tune", "--base", str(pretrained), "--out", str(tmp_path / "x"), "--quiet"]
    if "--task" not in extra:
        argv += ["--task", "ve"]
    assert fragment in _cli_error(capsys, argv + extra)


def test_cli_tune_unknown_base_is_one_line(tmp_path, capsys):
    err = _cli_error(capsys, ["train", "tune", "--base", str(tmp_path / "nowhere"), "--method", "prompt",
                              "--task", "ve", "--out", str(tmp_path / "o"), "--home", str(tmp_path / "h")])
    assert "unknown model" in err


# --- one pipeline: train -> evaluate -> save -> one card ------------------------------------------


def test_pipeline_writes_a_base_and_a_variant_with_one_card_each(tok, data, tmp_path):
    from robustbench_ofa.cards import ModelCard
    from robustbench_ofa.models.loading import load_pretrained
    from robustbench_ofa.training.pipeline import RunInfo, train_evaluate_save, trained_on
    from robustbench_ofa.tuning.variant import load_variant

    ve, tasks = {"ve": data["ve"]}, _tasks(tok, ["ve"])
    base_out = tmp_path / "base"
    info = RunInfo(name="b", tasks=["ve"], seed=0, image_size=SIZE, data={"train": "x"},
                   notes=lambda r: f"{r.steps} steps")
    done = train_evaluate_save(_model(tok, dropout=0.0), tasks, ve, _cfg(max_steps=2, checkpoint_every=1), info,
                               base_out, eval_data={"ve": data["ve"][:2]}, tokenizer=tok, work=tmp_path / "work",
                               atomic=True, progress=False)
    base = done.card
    assert base.method == "pretrain" and set(base.sha256) == {"model"} and base.clean["ve"]["n"] == 2
    assert base.notes == "2 steps" and base.trainable_params == base.total_params > 0
    assert base.data == {"train": "x", "train_samples": trained_on(ve)} and base.data["train_samples"]["ve"]["n"] == 6
    assert (base_out / "metrics.jsonl").is_file() and (base_out / "vocab.json").is_file()
    assert not (tmp_path / "work" / "checkpoint.pt").exists() and not (tmp_path / "base.tmp").exists()
    assert ModelCard.read(base_out).to_dict() == base.to_dict()

    model = load_pretrained(base_out)
    get_method("bitfit").apply(model)
    vinfo = RunInfo(name="v", tasks=["ve"], base="b", seed=1, image_size=SIZE)
    variant = train_evaluate_save(model, tasks, ve, _cfg(max_steps=1), vinfo, tmp_path / "v", base_dir=base_out,
                                  progress=False).card
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["card.json", "metrics.jsonl",
                                                                  "trainable.safetensors"]
    assert variant.sha256["base"] == base.sha256["model"]  # one way to hash the base
    assert variant.method == "bitfit" and variant.base == "b" and variant.clean == {} and variant.seed == 1
    assert variant.base_path == str(base_out.resolve()) and variant.train["max_steps"] == 1
    assert load_variant(tmp_path / "v").variant_card.to_dict() == {**variant.to_dict(), "path": variant.path}
    with pytest.raises(ValueError, match="atomic"):
        train_evaluate_save(_model(tok), tasks, ve, _cfg(max_steps=1), info, tmp_path / "x", atomic=True,
                            progress=False)


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("models", ("tuning", "training", "zoo", "cards", "commands", "evaluation")),
    ("tuning", ("training", "zoo", "commands", "evaluation")),
    ("training", ("zoo", "commands", "evaluation")),
    ("cards.py", ("tuning", "training", "zoo", "commands", "evaluation")),
])
def test_imports_point_down_the_layers(layer, forbidden):
    """models < cards < tuning < training < zoo: no module imports a layer above its own (not even lazily)."""
    package = Path(__file__).resolve().parents[1] / "robustbench_ofa"
    files = [package / layer] if layer.endswith(".py") else sorted((package / layer).glob("*.py"))
    for path in files:
        bad = sorted(m for m in _imports(path) if m.split(".")[:2] in [["robustbench_ofa", f] for f in forbidden])
        assert not bad, f"{path.name} imports {bad}"
