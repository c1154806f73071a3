"""Build the fixed-weight models of CI's evaluation-code gate (committed under reports/baselines/gate-models/).

    python scripts/build_gate_models.py            # rebuild them (then refresh reports/baselines/gate.json)

Why committed weights: the embedded zoo is rebuilt from nothing in CI, and a rebuild on another kind of
CPU gives other weights (float rounding in training), so gating it per sample would mix evaluation-code
changes with training-recipe variance. These two models are small (d_model 64, 1+1 layers, float16
weights, about 0.5 MB each) and never retrained in CI: evaluating them is deterministic up to float noise
of the forward/backward pass, so `robust-ofa regress` gates them sample by sample (scripts/ci_e2e.py).

They are trained by the zoo's own build code from a small recipe on the embedded benchmark's data (same
scenes, 96 px), then written as plain checkpoint folders (config.json + model.safetensors + tokenizer +
card.json): ``gate-base`` (pretrained multi-task) and ``gate-finetune`` (finetuned on the downstream split).
Their weights are rounded to float16 for size; evaluation runs in float32 on those exact values.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "baselines" / "gate-models"


def gate_recipe():
    from robustbench_ofa.training.config import TrainConfig
    from robustbench_ofa.zoo.recipe import EMBEDDED, VariantRecipe, ZooRecipe

    tune = TrainConfig(lr=2e-3, max_steps=300, batch_size=32, warmup_ratio=0.06, seed=1, log_every=20)
    return ZooRecipe(
        prefix="gate", scene=dict(EMBEDDED.scene), image_size=EMBEDDED.image_size, data_seed=EMBEDDED.data_seed,
        pretrain_n=3000, task_weights=dict(EMBEDDED.task_weights), downstream_n=1000, eval_n=128,
        model=dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, resnet_layers=[1, 1, 1],
                   resnet_base_planes=8, max_position_embeddings=128, image_bucket_size=8, dropout=0.0,
                   init_std=0.06),
        pretrain=TrainConfig(lr=2e-3, max_steps=1500, batch_size=32, warmup_ratio=0.05, seed=0, log_every=50),
        variants=(VariantRecipe("finetune", "finetune", {}, tune),), num_threads=1,
    )


def export(model_dir: Path, tokenizer_dir: Path, card: dict, out: Path) -> None:
    """A plain checkpoint folder with float16-rounded weights and a card naming their SHA-256."""
    import torch

    from robustbench_ofa.cards import ModelCard
    from robustbench_ofa.models.loading import file_sha256, save_pretrained
    from robustbench_ofa.tuning.base import count_trainable

    model = _load(model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.half()
    if out.exists():
        shutil.rmtree(out)
    save_pretrained(model, out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    fields = {k: v for k, v in card.items() if k in ModelCard.__dataclass_fields__}
    fields.update(name=out.name, method="checkpoint", base=None, base_path=None, path=None, source="user",
                  status="registered", sha256={"model": file_sha256(out / "model.safetensors")},
                  trainable_params=count_trainable(model), total_params=sum(p.numel() for p in model.parameters()),
                  notes=f"{card.get('notes', '')} CI gate model ({card['name']} of scripts/build_gate_models.py), "
                        "weights rounded to float16; clean numbers are before rounding".strip())
    ModelCard(**fields).write(out)


def _load(model_dir: Path):
    from robustbench_ofa.zoo.registry import load_folder

    return load_folder(model_dir).model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="where to build (default: a fresh temporary folder)")
    parser.add_argument("--out", default=str(OUT), help=f"where the folders go (default {OUT})")
    args = parser.parse_args(argv)
    from robustbench_ofa.zoo.build import artefact_dir, ensure_embedded

    home = Path(args.home or tempfile.mkdtemp(prefix="robust-ofa-gate-"))
    recipe = gate_recipe()
    root = ensure_embedded(home, recipe=recipe)
    out = Path(args.out)
    for name in ("base", "finetune"):
        folder = artefact_dir(root, name)
        card = json.loads((folder / "card.json").read_text())
        export(folder, root / "tokenizer", card, out / recipe.model_name(name))
        print(f"{out / recipe.model_name(name)}: clean {json.dumps(card['clean'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
