"""Initialisation choices for models trained from scratch (the embedded base model).

Location bins are ordinal (``<bin_17>`` is next to ``<bin_18>``) but OFA gives them independent random
embeddings, which is fine after web-scale pretraining and very slow to learn on a CPU budget: with the
output projection tied to the embeddings, a target bin's cross-entropy gradient then says nothing about
its neighbours. Initialising the bin rows as a random linear map of a few low-frequency sinusoids of the
bin index makes neighbouring bins start with similar embeddings (and so similar logits), so grounding
learns a coarse position first and refines it. Only the initial values change; the architecture and
the loss are OFA's.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_bin_embeddings(model: nn.Module, tokenizer, seed: int = 0, frequencies: int = 6) -> None:
    """Overwrite the ``<bin_i>`` rows of the shared token embedding with smooth functions of ``i``.

    Uses its own generator (seeded by ``seed``) so the global RNG stream is untouched; the rows get the
    model's ``init_std`` as their standard deviation.
    """
    n = tokenizer.num_bins
    if n == 0:
        return
    emb = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.arange(1, frequencies + 1, dtype=torch.float64)[None] * math.pi / n
    basis = torch.cat([torch.sin(idx * freq), torch.cos(idx * freq)], dim=1)
    proj = torch.randn(2 * frequencies, emb.shape[1], generator=g, dtype=torch.float64)
    rows = basis @ proj
    rows = rows / rows.std() * model.config.init_std
    emb[tokenizer.bin_offset:tokenizer.bin_offset + n] = rows.to(emb.dtype)
