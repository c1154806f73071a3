"""The sentence encoder of the text attacks' word-sense check: all-MiniLM-L6-v2 from its installed folder
(``robust-ofa setup-text``), mean-pooled and L2-normalised, as sentence-transformers computes it.

Loaded once per folder and process; never downloads (``transformers`` reads the local folder only).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch


@lru_cache(maxsize=2)
def _minilm(path: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def encode(path: str, sentences: Sequence[str]) -> torch.Tensor:
    """Unit-length sentence embeddings (one row per sentence), so a dot product is the cosine."""
    tokenizer, model = _minilm(path)
    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=128, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)
