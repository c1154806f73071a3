"""Shared fixtures: small OFA configs and randomised models (every weight non-trivial)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from robustbench_ofa.models import OFAConfig, OFAModel

#: Seed of the trained micro models (initialisation and data order; default 0). Another seed moves the
#: trained weights much as another CPU's kernels do, but further: ``ROBUST_OFA_TEST_SEED=3 pytest -m kernels``
#: shows whether a threshold sits on a cliff of one training run (README "Tests on every CPU").
MODEL_SEED = int(os.environ.get("ROBUST_OFA_TEST_SEED", "0"))


def launcher(nproc: int) -> list[str]:
    """The command that runs a script or ``-m`` module in ``nproc`` processes (torchrun) or in this Python."""
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [sys.executable]


def pytest_report_header(config) -> str:
    """The kernels and threads this run computes with: a failure that appears on one CPU kind only starts
    with knowing which kind ran it (README "Tests on every CPU")."""
    return (f"torch {torch.__version__}: ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads, seed of trained test models {MODEL_SEED}")


def small_config(**overrides) -> OFAConfig:
    fields = dict(vocab_size=320, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, resnet_layers=[1, 1, 1],
                  max_position_embeddings=128, dropout=0.0)
    fields.update(overrides)
    return OFAConfig(**fields)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter and BatchNorm statistic random values so each component matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model


def jitter_trainable(model: torch.nn.Module, seed: int = 3, std: float = 0.05) -> torch.nn.Module:
    """Add noise to the trainable tensors only, so a freshly attached method (LoRA's zero B, new
    prompts) changes what the model computes, as a tuned variant would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture
def config() -> OFAConfig:
    return small_config()


@pytest.fixture
def model(config) -> OFAModel:
    torch.manual_seed(0)
    return randomize(OFAModel(config)).eval()


@pytest.fixture
def batch():
    ids = torch.tensor([[0, 10, 20, 30, 2], [0, 11, 12, 2, 1]])
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    dec = torch.tensor([[0, 5, 6, 9], [0, 7, 8, 3]])
    return ids, images, dec


# --- a small OFA trained (in seconds) on a task that only the image can answer --------------------
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 220), "yellow": (230, 220, 50)}


def colour_samples(n: int, seed: int, size: int = 32):
    """'what color is the shape?' over one coloured square: text alone cannot answer it."""
    import random

    from PIL import Image, ImageDraw

    from robustbench_ofa.data.types import Sample

    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.choice(sorted(COLOURS))
        img = Image.new("RGB", (size, size), (rng.randint(0, 60),) * 3)
        x0, y0, s = rng.randint(0, size // 2 - 2), rng.randint(0, size // 2 - 2), rng.randint(10, size // 2 + 1)
        ImageDraw.Draw(img).rectangle([x0, y0, x0 + s, y0 + s], fill=COLOURS[c])
        out.append(Sample(uid=f"colour-{seed}-{i}", task="vqa", image=img, text="what color is the shape?",
                          answers=[c] * 10, label=c))
    return out


@pytest.fixture(scope="session")
def micro_tokenizer(tmp_path_factory):
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.models.tokenizer import train_bpe
    from robustbench_ofa.tasks import instruction, task_names

    texts = syn.corpus_texts() + [instruction(t, "x") for t in task_names()]
    return train_bpe(texts, tmp_path_factory.mktemp("micro-tok"), vocab_size=300, num_bins=50)


@pytest.fixture(scope="session")
def colour_model(micro_tokenizer):
    """(model, task): a micro OFA at 100 % clean accuracy on the colour task after ~150 steps."""
    from robustbench_ofa.tasks import get_task
    from robustbench_ofa.training.config import TrainConfig
    from robustbench_ofa.training.loop import train

    cfg = OFAConfig(vocab_size=micro_tokenizer.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    resnet_layers=[1, 1, 1], resnet_base_planes=8, max_position_embeddings=64, dropout=0.0)
    torch.manual_seed(MODEL_SEED)
    model = OFAModel(cfg)
    task = get_task("vqa", micro_tokenizer, 32, answers=sorted(COLOURS))
    train(model, {"vqa": task}, {"vqa": colour_samples(512, 0)},
          TrainConfig(lr=5e-3, batch_size=32, max_steps=150, num_threads=2, seed=MODEL_SEED), progress=False)
    return model.eval(), task


# --- a randomised micro OFA with a tokenizer for every task (task and registry tests) ------------------
@pytest.fixture(scope="session")
def task_tok(tmp_path_factory):
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.models.tokenizer import train_bpe
    from robustbench_ofa.tasks import instruction, task_names

    texts = syn.corpus_texts() + [instruction(t, "x") for t in task_names()]
    return train_bpe(texts, tmp_path_factory.mktemp("task-tok"), vocab_size=400, num_bins=100)


@pytest.fixture(scope="session")
def task_model(task_tok):
    cfg = OFAConfig(vocab_size=task_tok.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                    decoder_ffn_dim=64, resnet_layers=[1, 1, 1], max_position_embeddings=128)
    torch.manual_seed(0)
    return randomize(OFAModel(cfg), std=0.1).eval()


def embedded_ve(tokenizer, n: int):
    """(model, VE task, n generated test samples) on the embedded zoo's architecture at its image size,
    fresh weights: what the speed benchmarks time (speed does not depend on the weights)."""
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.tasks import get_task
    from robustbench_ofa.zoo.recipe import EMBEDDED

    torch.manual_seed(0)
    model = OFAModel(OFAConfig(**{**EMBEDDED.model, "vocab_size": tokenizer.vocab_size})).eval()
    task = get_task("ve", tokenizer, EMBEDDED.image_size)
    return model, task, syn.generate("ve", "test", n, EMBEDDED.scene_config())
