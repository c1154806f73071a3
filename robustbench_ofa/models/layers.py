"""OFA attention and transformer layers (pre-LN with NormFormer extras).

Attention runs through ``scaled_dot_product_attention`` with OFA's position biases and masks folded into
one additive ``bias`` tensor; an ``eager`` path (softmax(QK^T + bias)V written out) is kept as the
reference for tests and benchmarks. Deep prefix prompts (OFA-PT) enter as extra keys/values in front of
the self-attention keys/values, after the projections; prompt keys get no position bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from robustbench_ofa.models.resnet import DropPath

KV = tuple[torch.Tensor, torch.Tensor]
ATTN_IMPLS = ("sdpa", "eager")


class OFAAttention(nn.Module):
    """Multi-head attention with OFA's (2 * head_dim) ** -0.5 scale and NormFormer head scales."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, scale_factor: float = 2.0,
                 scale_heads: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = float(self.head_dim * scale_factor) ** -0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.c_attn = nn.Parameter(torch.ones(num_heads)) if scale_heads else None
        self.impl = "sdpa"

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        bias: torch.Tensor | None,
        kv_input: torch.Tensor | None = None,
        past: KV | None = None,
        prompt_kv: KV | None = None,
    ) -> tuple[torch.Tensor, KV]:
        """Attend ``hidden`` to itself (``kv_input`` None) or to ``kv_input`` (cross-attention).

        ``bias`` (B|1, H, T, S) holds position biases and masks (masked entries at the dtype's min).
        ``past`` holds cached keys/values: prepended for self-attention, reused as-is for cross-attention.
        Returns the output and the keys/values to cache (prompts excluded: they are recomputed).
        """
        q = self._split(self.q_proj(hidden))
        if kv_input is None:
            k = self._split(self.k_proj(hidden))
            v = self._split(self.v_proj(hidden))
            if past is not None:
                k = torch.cat([past[0], k], dim=2)
                v = torch.cat([past[1], v], dim=2)
        elif past is not None:
            k, v = past
        else:
            k = self._split(self.k_proj(kv_input))
            v = self._split(self.v_proj(kv_input))
        present = (k, v)
        if prompt_kv is not None:
            pk, pv = prompt_kv
            k = torch.cat([pk.to(k.dtype), k], dim=2)
            v = torch.cat([pv.to(v.dtype), v], dim=2)
            if bias is not None:
                bias = F.pad(bias, (pk.shape[2], 0))
        out = self._attend(q, k, v, bias)
        if self.c_attn is not None:
            out = out * self.c_attn.to(out.dtype)[None, :, None, None]
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return self.out_proj(out), present

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        if bias is not None:
            bias = bias.to(q.dtype)
        if self.impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=self.scaling)
        weights = torch.matmul(q * self.scaling, k.transpose(-1, -2))
        if bias is not None:
            weights = weights + bias
        weights = F.dropout(torch.softmax(weights, dim=-1), p=p, training=self.training)
        return torch.matmul(weights, v)


class _LayerBase(nn.Module):
    """Shared pieces of encoder and decoder layers (FFN block, residual with drop path, adapter hook)."""

    def _init_ffn(self, d: int, ffn_dim: int, config, drop_path_rate: float) -> None:
        self.dropout = nn.Dropout(config.dropout)
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.fc1 = nn.Linear(d, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d)
        self.ffn_layer_norm = nn.LayerNorm(ffn_dim) if config.normformer else None
        self.final_layer_norm = nn.LayerNorm(d)
        self.drop_path = DropPath(drop_path_rate)
        #: Optional bottleneck adapter (set by the ``adapter`` tuning method), applied after fc2.
        self.adapter: nn.Module | None = None

    def _ffn_block(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        if self.normalize_before:
            x = self.final_layer_norm(x)
        x = self.activation_dropout(self.activation_fn(self.fc1(x)))
        if self.ffn_layer_norm is not None:
            x = self.ffn_layer_norm(x)
        x = self.dropout(self.fc2(x))
        if self.adapter is not None:
            x = self.adapter(x)
        x = residual + self.drop_path(x)
        if not self.normalize_before:
            x = self.final_layer_norm(x)
        return x

    def _attn_block(self, x: torch.Tensor, attn: OFAAttention, pre_ln: nn.LayerNorm, mid_ln: nn.LayerNorm | None,
                    **kwargs) -> tuple[torch.Tensor, KV]:
        residual = x
        if self.normalize_before:
            x = pre_ln(x)
        x, present = attn(x, **kwargs)
        if mid_ln is not None:
            x = mid_ln(x)
        x = residual + self.drop_path(self.dropout(x))
        if not self.normalize_before:
            x = pre_ln(x)
        return x, present


class OFAEncoderLayer(_LayerBase):
    """Self-attention + FFN, pre-LN, NormFormer mid/FFN LayerNorms."""

    def __init__(self, config, drop_path_rate: float = 0.0):
        super().__init__()
        d = config.d_model
        self.normalize_before = config.encoder_normalize_before
        self.self_attn = OFAAttention(d, config.encoder_attention_heads, config.attention_dropout,
                                      config.attn_scale_factor)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn_mid_layer_norm = nn.LayerNorm(d) if config.normformer else None
        self._init_ffn(d, config.encoder_ffn_dim, config, drop_path_rate)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, prompt_kv: KV | None = None) -> torch.Tensor:
        x, _ = self._attn_block(x, self.self_attn, self.self_attn_layer_norm, self.self_attn_mid_layer_norm,
                                bias=bias, prompt_kv=prompt_kv)
        return self._ffn_block(x)


class OFADecoderLayer(_LayerBase):
    """Causal self-attention (+ prompts), cross-attention to the encoder, FFN."""

    def __init__(self, config, drop_path_rate: float = 0.0):
        super().__init__()
        d = config.d_model
        heads = config.decoder_attention_heads
        self.normalize_before = config.decoder_normalize_before
        self.self_attn = OFAAttention(d, heads, config.attention_dropout, config.attn_scale_factor)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn_mid_layer_norm = nn.LayerNorm(d) if config.normformer else None
        self.cross_attn = OFAAttention(d, heads, config.attention_dropout, config.attn_scale_factor)
        self.cross_attn_layer_norm = nn.LayerNorm(d)
        self.cross_attn_mid_layer_norm = nn.LayerNorm(d) if config.normformer else None
        self._init_ffn(d, config.decoder_ffn_dim, config, drop_path_rate)

    def forward(
        self,
        x: torch.Tensor,
        self_bias: torch.Tensor | None,
        enc: torch.Tensor,
        cross_bias: torch.Tensor | None,
        past: tuple[torch.Tensor, ...] | None = None,
        prompt_kv: KV | None = None,
        group: int = 1,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``group`` > 1: each row of ``enc`` (and of the cached cross keys/values) serves ``group``
        consecutive rows of ``x`` (the candidates of one answer set). Their queries are folded into one
        longer query sequence for cross-attention, so the encoder's keys/values are projected once per
        image instead of once per candidate; ``cross_bias`` must then be (B_enc, H, group * T, S)."""
        self_past = past[:2] if past is not None else None
        cross_past = past[2:] if past is not None else None
        x, self_present = self._attn_block(x, self.self_attn, self.self_attn_layer_norm,
                                           self.self_attn_mid_layer_norm, bias=self_bias, past=self_past,
                                           prompt_kv=prompt_kv)
        rows, t, d = x.shape
        if group > 1:  # every op of the cross block is per token except attention, which is per query
            x = x.reshape(rows // group, group * t, d)
        x, cross_present = self._attn_block(x, self.cross_attn, self.cross_attn_layer_norm,
                                            self.cross_attn_mid_layer_norm, bias=cross_bias, kv_input=enc,
                                            past=cross_past)
        if group > 1:
            x = x.reshape(rows, t, d)
        return self._ffn_block(x), self_present + cross_present
