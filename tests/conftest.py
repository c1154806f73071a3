"""Shared fixtures: small OFA configs and randomised models (every weight non-trivial)."""

from __future__ import annotations

import pytest
import torch

from robustbench_ofa.models import OFAConfig, OFAModel


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
