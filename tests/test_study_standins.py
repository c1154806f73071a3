"""The shipped OFA-PT studies, run through on stand-ins of what a user holds.

Stand-ins: an OFA-tiny-shaped checkpoint (ResNet-50 stages, d_model 256, 4+4 layers; random weights; a
small BPE instead of BART's 50k merges) written in the OFA-Sys HF file layout (config.json,
pytorch_model.bin, vocab.json, merges.txt), and TSV files in each of OFA's four layouts with base64 images,
VQA with answers the generator never makes and OFA's ans2label.pkl. Only the scale is overridden (epochs,
batch sizes, image size, samples, attack steps, device); every table, option and path of the file is used.
"""

from __future__ import annotations

import base64
import io
import pickle
from pathlib import Path

import pytest
import torch

from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.study import load_study
from robustbench_ofa.study.spec import tomllib  # tomli on Python 3.10
from robustbench_ofa.training.parallel import StepSplit

STUDIES = Path(__file__).resolve().parents[1] / "studies"
SHIPPED = sorted(p.name for p in STUDIES.glob("ofa-pt-*.toml"))
LAYOUT = {"grounding": "refcoco", "ve": "snli_ve", "vqa": "vqa", "caption": "caption"}
VE_LABEL = {"yes": "entailment", "maybe": "neutral", "no": "contradiction"}
#: Answers the generator never makes, one per question, to replace some VQA references with.
ODD_ANSWERS = ["umbrella", "2 people", "giraffe", "kite"]


def _b64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return base64.urlsafe_b64encode(buffer.getvalue()).decode()


#: Stored images are not square and not the model's size (the model reads 64 px squares).
ODD_SIZE = (80, 56)


def _row(task: str, i: int, s) -> list[str]:
    sx, sy = ODD_SIZE[0] / s.image.width, ODD_SIZE[1] / s.image.height
    uid, image = str(1000 + i), _b64(s.image.resize(ODD_SIZE))
    if task == "grounding":
        box = (s.box[0] * sx, s.box[1] * sy, s.box[2] * sx, s.box[3] * sy)
        return [uid, str(i), s.text, ",".join(f"{v:.1f}" for v in box), image]
    if task == "ve":
        return [uid, str(i), image, s.text, s.premise or "a picture", VE_LABEL[s.label]]
    if task == "vqa":
        answers = [ODD_ANSWERS[i % len(ODD_ANSWERS)]] if i % 2 else list(s.answers)
        counts = {a: answers.count(a) for a in answers}
        ref = "&&".join(f"{min(c / 3, 1.0):.1f}|!+{a}" for a, c in counts.items())
        return [uid, str(i), s.text, ref, "", image]
    return [uid, str(i), "&&".join(s.captions), "", image]


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """{"ckpt": folder, "<task>": (train tsv, val tsv), "ans2label": pkl}."""
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.models.config import SIZE_PRESETS
    from robustbench_ofa.models.tokenizer import train_bpe
    from robustbench_ofa.tasks import instruction, task_names

    root = tmp_path_factory.mktemp("standins")
    ckpt = root / "ofa-tiny"
    texts = syn.corpus_texts() + ODD_ANSWERS + [instruction(t, "x") for t in task_names()]
    tok = train_bpe(texts, ckpt, vocab_size=400, num_bins=1000)
    config = OFAConfig(**{**SIZE_PRESETS["tiny"], "vocab_size": tok.vocab_size})
    torch.manual_seed(0)
    model = OFAModel(config)
    config.save_pretrained(str(ckpt))
    torch.save(model.state_dict(), ckpt / "pytorch_model.bin")
    out = {"ckpt": ckpt}
    scene = syn.SceneConfig(image_size=64)
    for task, layout in LAYOUT.items():
        files = []
        for split in ("downstream_train", "downstream_test"):
            rows = [_row(task, i, s) for i, s in enumerate(syn.generate(task, split, 4, scene))]
            path = root / f"{layout}_{split}.tsv"
            path.write_text("".join("\t".join(r) + "\n" for r in rows))
            files.append(path)
        out[task] = tuple(files)
    answers = sorted({a for s in syn.generate("vqa", "downstream_train", 4, scene) for a in s.answers} | set(ODD_ANSWERS))
    out["ans2label"] = root / "trainval_ans2label.pkl"
    out["ans2label"].write_bytes(pickle.dumps({a: i for i, a in enumerate(answers)}))
    return out


def _required(name: str) -> list[str]:
    """The variables a shipped study declares without a default (the user's paths)."""
    declared = tomllib.loads((STUDIES / name).read_text())["vars"]
    return [v for v, decl in declared.items() if "default" not in decl]


def _shape(name: str):
    """The study read with a placeholder for each required variable (for its tables, not its paths)."""
    return load_study(STUDIES / name, [f"{v}=x" for v in _required(name)])


def _sets(name: str, standins, home: Path) -> list[str]:
    spec_vars = _shape(name)
    task = next(iter(spec_vars.variants.values()))["task"]
    train, val = standins[task]
    sets = [f"ofa_base={standins['ckpt']}", f"ofa_large={standins['ckpt']}", f"train={train}", f"val={val}",
            "device=cpu", "n_samples=2", "eps=8/255", f"study.home={str(home)!r}",
            "evaluate.batch-size=2", "evaluate.steps=1", "evaluate.report=md", "evaluate.beam=1",
            "evaluate.sanity-steps=2", "evaluate.sanity-restarts=1"]
    if "ans2label" in _required(name):
        sets.append(f"ans2label={standins['ans2label']}")
    for variant in spec_vars.variants:  # scale only: one optimiser step (2 micro-batches of 2) at 64 px
        sets += [f"variants.{variant}.image-size=64", f"variants.{variant}.batch-size=4",
                 f"variants.{variant}.micro-batch-size=2", f"variants.{variant}.beam=1"]
        sets.append(f"variants.{variant}.{'steps' if 'steps' in spec_vars.variants[variant] else 'epochs'}=1")
    return [a for s in sets for a in ("--set", s)]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_plans_cleanly(name, standins, tmp_path, capsys):
    assert main(["study", "plan", str(STUDIES / name), *_sets(name, standins, tmp_path / "home"),
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.count("robust-ofa train tune") == 4 and out.count("robust-ofa evaluate") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_studies_run_ofas_global_batches_on_1_to_8_gpus(name):
    """Every variant keeps OFA's global batch as its recipe and OFA's per-GPU batch as its micro-batch, on
    1, 2, 4 or 8 processes (the rest is accumulation); `study plan --world-size` prints the split."""
    spec = _shape(name)
    for variant, table in spec.variants.items():
        assert table["batch-size"] % table["micro-batch-size"] == 0, variant
        for world in (1, 2, 4, 8):
            split = StepSplit(table["batch-size"], world, table["micro-batch-size"])
            assert split.micro_batch * split.accumulation * world == table["batch-size"]
    with pytest.raises(RobustOFAError, match="does not divide --batch-size"):
        StepSplit(spec.variants[next(iter(spec.variants))]["batch-size"], 3,
                  spec.variants[next(iter(spec.variants))]["micro-batch-size"])


def test_shipped_studies_cover_the_papers_four_tasks():
    tasks = {next(iter(_shape(n).variants.values()))["task"] for n in SHIPPED}
    assert tasks == set(LAYOUT)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_runs_through_on_its_tiny_standin(name, standins, tmp_path):
    import json

    from robustbench_ofa.cards import ModelCard

    run = tmp_path / "run"
    assert main(["study", "run", str(STUDIES / name), *_sets(name, standins, tmp_path / "home"),
                 "--out", str(run)]) == 0
    summary = json.loads((run / "evaluate" / "summary.json").read_text())
    assert summary["complete"] and summary["run"]["study"]["name"] == name.removesuffix(".toml")
    assert {r["variant"] for r in summary["clean"]} == {"base-finetune", "base-prompt", "large-finetune",
                                                         "large-prompt"}
    prompt = ModelCard.read(run / "variants" / "base-prompt")
    assert prompt.hparams["length"] == 100 and prompt.hparams["depth"] == "both"
    assert prompt.study["sha256"] and prompt.image_size == 64
    assert (run / "evaluate" / "report.md").is_file()
