"""OFA encoder-decoder in PyTorch, computing what the OFA-Sys HF-format port computes.

State-dict keys are the port's, so OFA-Sys checkpoints load directly. Differences from the port are
engineering only: attention through SDPA, position biases computed once per forward for the whole batch
(they depend on positions, not on content), non-learned bucket tables kept out of the state dict, and
hooks for the tuning methods (deep prefix prompts, adapters, LoRA) that the port does not have.

Encoder input is ``[image patches; text tokens]``; no absolute positions are added to the inputs: an
absolute-position attention bias (q/k projections of LayerNormed position embeddings) plus per-layer
relative-position biases (1-D buckets for text, 2-D for image patches) enter every attention.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import ModelOutput

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.config import OFAConfig
from robustbench_ofa.models.layers import ATTN_IMPLS, OFAAttention, OFADecoderLayer, OFAEncoderLayer
from robustbench_ofa.models.position import (
    code_image_position_ids,
    image_bucket_positions,
    image_grid_ids,
    image_num_relative_distance,
    token_bucket_positions,
)
from robustbench_ofa.models.resnet import ResNet

#: Buffers recomputed from the config; present in released files, never loaded from them.
INDEX_BUFFERS = ("token_rp_bucket", "image_rp_bucket", "image_position_idx")

#: The index tables, computed once per size and shared by every model built in the process (read-only: the
#: model only indexes them). OFA-base's are 33 MB and took 0.1 s to compute in each of the two stacks of
#: every model built, and an evaluation builds each variant several times (cards, twins, transfer).
_token_buckets = functools.lru_cache(maxsize=8)(token_bucket_positions)
_image_buckets = functools.lru_cache(maxsize=8)(image_bucket_positions)
_code_image_ids = functools.lru_cache(maxsize=8)(code_image_position_ids)


@dataclass
class OFAEncoderOutput(ModelOutput):
    """Encoder states, key padding mask (True = pad) and LayerNormed position embeddings for the decoder."""

    last_hidden_state: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None
    position_embedding: torch.Tensor | None = None

    def index_select(self, index: torch.Tensor) -> OFAEncoderOutput:
        """Reorder/expand along the batch (beam search, answer-set scoring)."""
        return OFAEncoderOutput(
            last_hidden_state=self.last_hidden_state.index_select(0, index),
            padding_mask=self.padding_mask.index_select(0, index),
            position_embedding=self.position_embedding.index_select(0, index),
        )


def _masked_bias(bias: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Fold a boolean ``allowed`` mask into an additive bias with the dtype's min at masked entries."""
    if allowed is None:
        return bias
    return bias.masked_fill(~allowed, torch.finfo(bias.dtype).min)


def _may_have_pads(pad: torch.Tensor) -> bool:
    """Whether to apply the padding mask. On an accelerator always (a no-op without pads) rather than
    asking the host whether there are pads: that question would stall every step of an attack (a device
    sync). On the CPU the answer is free, and skipping the mask skips work."""
    return True if pad.device.type != "cpu" else bool(pad.any())


class _PositionTables(nn.Module):
    """Position embeddings, their LayerNorms and the relative-position tables shared by both stacks."""

    #: Recompute each layer's activations in the backward pass (``OFAModel.set_activation_checkpointing``).
    activation_checkpointing = False

    def _layer(self, layer: nn.Module, *args, **kwargs):
        """``layer(*args, **kwargs)``, checkpointed when training with checkpointing on: only the layer's
        inputs are kept and its activations recomputed in backward (non-reentrant, RNG state replayed, so
        dropout draws the same masks and the gradients are those of the plain call)."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(layer, *args, use_reentrant=False, **kwargs)
        return layer(*args, **kwargs)

    def _init_positions(self, config: OFAConfig, num_layers: int, num_heads: int) -> None:
        d = config.d_model
        self.num_heads = num_heads
        self.embed_positions = nn.Embedding(config.max_position_embeddings + 2, d)
        self.embed_image_positions = nn.Embedding(config.image_bucket_size**2 + 1, d)
        self.pos_ln = nn.LayerNorm(d)
        self.image_pos_ln = nn.LayerNorm(d)
        self.pos_scaling = float(d / num_heads * config.attn_scale_factor) ** -0.5
        self.token_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(2 * config.token_bucket_size - 1, num_heads) for _ in range(num_layers)
        )
        self.image_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(image_num_relative_distance(config.image_bucket_size), num_heads)
            for _ in range(num_layers)
        )
        self.image_bucket_size = config.image_bucket_size
        self.register_buffer("token_rp_bucket", _token_buckets(config.token_bucket_size,
                                                                       config.max_position_embeddings),
                             persistent=False)
        self.register_buffer("image_rp_bucket", _image_buckets(config.image_bucket_size),
                             persistent=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)

    def abs_bias(self, q_lin: nn.Linear, k_lin: nn.Linear, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """(B, H, Tq, Tk) absolute-position bias from already LayerNormed position embeddings."""
        q = self._heads(q_lin(q_pos)) * self.pos_scaling
        return torch.matmul(q, self._heads(k_lin(k_pos)).transpose(2, 3))

    def token_rel_bias(self, layer: int, q_idx: torch.Tensor, k_len: int) -> torch.Tensor:
        """(H, Tq, Tk) 1-D relative bias of layer ``layer`` for query positions ``q_idx``."""
        bucket = self.token_rp_bucket[q_idx][:, :k_len]
        return self.token_rel_pos_table_list[layer].weight[bucket].permute(2, 0, 1)

    def image_rel_bias(self, layer: int, ids: torch.Tensor, k_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(H, N, M) 2-D relative bias between patch position ids."""
        k_ids = ids if k_ids is None else k_ids
        bucket = self.image_rp_bucket[ids][:, k_ids]
        return self.image_rel_pos_table_list[layer].weight[bucket].permute(2, 0, 1)


class OFAEncoder(_PositionTables):
    """Image (ResNet stages 1-3) + text encoder."""

    def __init__(self, config: OFAConfig, embed_tokens: nn.Embedding):
        super().__init__()
        d = config.d_model
        self.config = config
        self.padding_idx = config.pad_token_id
        self.embed_scale = d**0.5 if config.scale_embedding else 1.0
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.dropout)
        self.type_embedding = nn.Embedding(2, d) if config.add_type_embedding else None
        self.embed_images = ResNet(config.backbone_layers(), drop_path_rate=config.resnet_drop_path_rate,
                                   base_planes=config.resnet_base_planes)
        self.image_proj = nn.Linear(self.embed_images.out_channels, d)
        self.patch_layernorm_embedding = nn.LayerNorm(d) if config.patch_layernorm_embedding else None
        self.layernorm_embedding = nn.LayerNorm(d) if config.layernorm_embedding else None
        self._init_positions(config, config.encoder_layers, config.encoder_attention_heads)
        self.pos_q_linear = nn.Linear(d, d)
        self.pos_k_linear = nn.Linear(d, d)
        rates = torch.linspace(0, config.encoder_drop_path_rate, config.encoder_layers).tolist()
        self.layers = nn.ModuleList(OFAEncoderLayer(config, rates[i]) for i in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d) if config.encoder_normalize_before else None
        #: Optional OFA-PT prompt generator (``prompt`` tuning method); fairseq's attribute name.
        self.encoder_prompt_encoder: nn.Module | None = None

    def _embed_text(self, input_ids: torch.Tensor, token_embeddings: torch.Tensor | None) -> torch.Tensor:
        x = self.embed_tokens(input_ids) if token_embeddings is None else token_embeddings
        x = self.embed_scale * x
        if self.type_embedding is not None:
            x = x + self.type_embedding.weight[0]
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return self.dropout(x)

    def _embed_image(self, patch_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.embed_images(patch_images)
        h, w = feats.shape[-2:]
        x = self.embed_scale * self.image_proj(feats.flatten(2).transpose(1, 2))
        if self.type_embedding is not None:
            x = x + self.type_embedding.weight[1]
        if self.patch_layernorm_embedding is not None:
            x = self.patch_layernorm_embedding(x)
        return self.dropout(x), image_grid_ids(h, w, self.image_bucket_size, patch_images.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        patch_images: torch.Tensor | None = None,
        patch_masks: torch.Tensor | None = None,
        token_embeddings: torch.Tensor | None = None,
        image_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> OFAEncoderOutput:
        """``image_features``: ``embed_image``'s output, given instead of ``patch_images`` to reuse one
        image's patch embeddings across many texts (text attacks query one image with many candidates)."""
        bsz, n_txt = input_ids.shape
        device = input_ids.device
        pad = input_ids.eq(self.padding_idx)
        x = self._embed_text(input_ids, token_embeddings)
        pos = self.pos_ln(self.embed_positions(torch.arange(n_txt, device=device)))[None]
        n_img, grid = 0, None
        if patch_images is not None or image_features is not None:
            image_x, grid = self._embed_image(patch_images) if image_features is None else image_features
            if image_x.shape[0] != bsz:
                image_x = image_x.expand(bsz, -1, -1)
            n_img = grid.numel()
            # ``patch_masks`` is accepted but, as in the OFA-Sys port (which disabled fairseq's masking
            # of the first image), does not hide any patch: outputs match the port for any mask.
            image_pad = torch.zeros(bsz, n_img, dtype=torch.bool, device=device)
            x = torch.cat([image_x, x], dim=1)
            pad = torch.cat([image_pad, pad], dim=1)
            image_pos = self.image_pos_ln(self.embed_image_positions(grid))[None]
            pos = torch.cat([image_pos, pos], dim=1)
        has_pads = _may_have_pads(pad)
        if has_pads:
            x = x * (1 - pad.unsqueeze(-1).type_as(x))
        abs_bias = self.abs_bias(self.pos_q_linear, self.pos_k_linear, pos, pos)  # (1, H, S, S)
        allowed = ~pad[:, None, None, :] if has_pads else None
        prompts = self._prompts(bsz)
        txt_idx = torch.arange(n_txt, device=device)
        for idx, layer in enumerate(self.layers):
            bias = abs_bias.clone()
            bias[:, :, n_img:, n_img:] += self.token_rel_bias(idx, txt_idx, n_txt)
            if grid is not None:
                bias[:, :, :n_img, :n_img] += self.image_rel_bias(idx, grid)
            x = self._layer(layer, x, _masked_bias(bias, allowed), prompt_kv=prompts[idx] if prompts else None)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return OFAEncoderOutput(last_hidden_state=x, padding_mask=pad,
                                position_embedding=pos.expand(bsz, -1, -1))

    def _prompts(self, bsz: int) -> list | None:
        if self.encoder_prompt_encoder is None:
            return None
        return self.encoder_prompt_encoder(bsz, len(self.layers))


class OFADecoder(_PositionTables):
    """Autoregressive decoder with cross-attention, tied output projection and KV cache."""

    def __init__(self, config: OFAConfig, embed_tokens: nn.Embedding):
        super().__init__()
        d = config.d_model
        self.config = config
        self.padding_idx = config.pad_token_id
        self.embed_scale = d**0.5 if config.scale_embedding else 1.0
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.dropout)
        rates = torch.linspace(0, config.decoder_drop_path_rate, config.decoder_layers).tolist()
        self.layers = nn.ModuleList(OFADecoderLayer(config, rates[i]) for i in range(config.decoder_layers))
        self.layernorm_embedding = nn.LayerNorm(d) if config.layernorm_embedding else None
        self._init_positions(config, config.decoder_layers, config.decoder_attention_heads)
        self.self_pos_q_linear = nn.Linear(d, d)
        self.self_pos_k_linear = nn.Linear(d, d)
        self.cross_pos_q_linear = nn.Linear(d, d)
        self.cross_pos_k_linear = nn.Linear(d, d)
        self.code_layernorm_embedding = nn.LayerNorm(d) if config.code_layernorm_embedding else None
        self.layer_norm = nn.LayerNorm(d) if config.decoder_normalize_before else None
        if config.share_decoder_input_output_embed:
            self.output_projection = nn.Linear(d, config.vocab_size, bias=False)
            self.output_projection.weight = embed_tokens.weight
        else:
            self.output_projection = nn.Linear(d, config.vocab_size, bias=False)
        self.register_buffer("image_position_idx",
                             _code_image_ids(config.code_image_size, config.image_bucket_size),
                             persistent=False)
        #: Optional OFA-PT prompt generator (``prompt`` tuning method); fairseq's attribute name.
        self.decoder_prompt_encoder: nn.Module | None = None

    def _embed(self, ids: torch.Tensor, code_masks: torch.Tensor | None) -> torch.Tensor:
        x = self.embed_scale * self.embed_tokens(ids)
        if self.layernorm_embedding is not None:
            text_x = self.layernorm_embedding(x)
            if code_masks is not None and self.code_layernorm_embedding is not None and bool(code_masks.any()):
                x = torch.where(code_masks[:, None, None], self.code_layernorm_embedding(x), text_x)
            else:
                x = text_x
        return self.dropout(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_out: OFAEncoderOutput,
        attention_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        use_cache: bool = False,
        code_masks: torch.Tensor | None = None,
        group: int = 1,
    ) -> tuple[torch.Tensor, tuple | None]:
        """Decode ``input_ids`` (the new tokens only when ``past_key_values`` is given).

        ``attention_mask`` (B, past + T) marks valid decoder positions (1) as in the port.
        ``group`` > 1 (answer-set scoring): ``input_ids`` has ``group`` consecutive rows per row of
        ``encoder_out``, which is then neither copied nor re-projected per row; a cache's self-attention
        entries have one row per decoder row, its cross-attention entries one per encoder row.
        Returns (logits (B, T, V), new cache or None).
        """
        if group > 1 and (attention_mask is not None or code_masks is not None
                          or input_ids.shape[0] != group * encoder_out.last_hidden_state.shape[0]):
            raise ValueError(f"group={group} needs {group} decoder rows per encoder row and no attention_mask "
                             f"or code_masks; got {input_ids.shape[0]} rows for "
                             f"{encoder_out.last_hidden_state.shape[0]}")
        bsz, t_new = input_ids.shape
        device = input_ids.device
        past_len = past_key_values[0][0].shape[2] if past_key_values else 0
        total = past_len + t_new
        all_idx = torch.arange(total, device=device)
        q_idx = all_idx[past_len:]
        text_pos = self.pos_ln(self.embed_positions(all_idx))[None]
        self_bias = self.abs_bias(self.self_pos_q_linear, self.self_pos_k_linear, text_pos[:, past_len:], text_pos)
        enc_pos = encoder_out.position_embedding
        cross_bias = self.abs_bias(self.cross_pos_q_linear, self.cross_pos_k_linear,
                                   text_pos[:, past_len:].expand(enc_pos.shape[0], -1, -1), enc_pos)
        is_code = code_masks is not None and bool(code_masks.any())
        if is_code:
            self_bias, cross_bias = self._code_biases(code_masks, all_idx, past_len, enc_pos, self_bias, cross_bias)
        allowed = (all_idx[None, :] <= q_idx[:, None])[None, None]  # causal, (1, 1, T, total)
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :total].bool()
        cross_allowed = ~encoder_out.padding_mask[:, None, None, :]
        cross_bias = _masked_bias(cross_bias, cross_allowed)
        if group > 1:  # the folded queries of one encoder row: group copies of the T positions
            cross_bias = cross_bias.repeat(1, 1, group, 1)
        x = self._embed(input_ids, code_masks)
        prompts = self._prompts(bsz)
        enc = encoder_out.last_hidden_state
        cache = [] if use_cache else None
        for idx, layer in enumerate(self.layers):
            rel = self.token_rel_bias(idx, q_idx, total)[None]
            if is_code:
                img_rel = self.image_rel_bias(idx, self.image_position_idx[q_idx],
                                              self.image_position_idx[:total])[None]
                rel = torch.where(code_masks[:, None, None, None], img_rel, rel)
            bias = _masked_bias(self_bias + rel, allowed)
            past = past_key_values[idx] if past_key_values else None
            x, present = self._layer(layer, x, bias, enc, cross_bias, past=past,
                                     prompt_kv=prompts[idx] if prompts else None, group=group)
            if cache is not None:
                cache.append(present)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.output_projection(x), (tuple(cache) if cache is not None else None)

    def _code_biases(self, code_masks, all_idx, past_len, enc_pos, self_bias, cross_bias):
        """Image-code rows (image generation) use image position embeddings and LayerNorm."""
        img_raw = self.embed_image_positions(self.image_position_idx[all_idx])[None]
        img_pos = self.image_pos_ln(img_raw)
        img_self = self.abs_bias(self.self_pos_q_linear, self.self_pos_k_linear, img_pos[:, past_len:], img_pos)
        img_cross = self.abs_bias(self.cross_pos_q_linear, self.cross_pos_k_linear,
                                  img_pos[:, past_len:].expand(enc_pos.shape[0], -1, -1), enc_pos)
        sel = code_masks[:, None, None, None]
        return torch.where(sel, img_self, self_bias), torch.where(sel, img_cross, cross_bias)

    def _prompts(self, bsz: int) -> list | None:
        if self.decoder_prompt_encoder is None:
            return None
        return self.decoder_prompt_encoder(bsz, len(self.layers))


class OFAModel(PreTrainedModel):
    """OFA encoder-decoder with a tied LM head. ``forward`` matches the OFA-Sys port's arguments."""

    config_class = OFAConfig
    base_model_prefix = "ofa"
    main_input_name = "input_ids"
    _tied_weights_keys = ["decoder.embed_tokens.weight", "decoder.output_projection.weight"]

    def __init__(self, config: OFAConfig):
        config.validate()
        super().__init__(config)
        shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = OFAEncoder(config, shared)
        self.decoder = OFADecoder(config, shared)
        #: Keep BatchNorm in eval mode even in ``train()`` (parameter-efficient tuning, attacks).
        self.freeze_batchnorm = False
        self.post_init()

    # -- HF plumbing -------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder.output_projection

    def train(self, mode: bool = True) -> OFAModel:
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def set_activation_checkpointing(self, on: bool = True) -> None:
        """Recompute, in the backward pass of training, each encoder and decoder layer and each ResNet stage
        instead of keeping their activations: memory for OFA-base/large at 480 px, at the cost of one more
        forward of those parts. The gradients are unchanged (see ``_PositionTables._layer``); ResNet stages
        whose BatchNorm trains are not recomputed (a replay would update the running statistics twice)."""
        for m in (self.encoder, self.decoder, self.encoder.embed_images):
            m.activation_checkpointing = bool(on)

    def set_attention_impl(self, impl: str) -> None:
        """Switch every attention between ``sdpa`` (default) and ``eager`` (reference formula)."""
        if impl not in ATTN_IMPLS:
            raise RobustOFAError(f"attention implementation {impl!r}: expected one of {', '.join(ATTN_IMPLS)}")
        for m in self.modules():
            if isinstance(m, OFAAttention):
                m.impl = impl

    # -- forward -----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """Pickling (``torch.save(model)``) leaves out the weak reference of the last checked ids."""
        state = dict(super().__getstate__())
        state.pop("_checked_ids", None)
        return state

    @staticmethod
    def _ids_key(input_ids: torch.Tensor) -> tuple | None:
        """What identifies an already range-checked ids tensor on an accelerator (None on CPU: always
        checked, it is cheap). Reading max/min back is a host sync, and an attack passes the same ids
        tensor at every step, so on a GPU it is checked once: the same tensor object (a weak reference,
        so a new tensor at a recycled address is checked again) at the same version."""
        if input_ids.device.type == "cpu":
            return None
        return weakref.ref(input_ids), input_ids._version

    def check_inputs(self, input_ids: torch.Tensor | None, patch_images: torch.Tensor | None) -> None:
        """One-line errors for malformed inputs, before they become shape errors deep in the network."""
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise RobustOFAError(f"input_ids: expected shape (batch, length), got {tuple(input_ids.shape)}")
            key, seen = self._ids_key(input_ids), getattr(self, "_checked_ids", None)
            same = key is not None and seen is not None and seen[0]() is input_ids and seen[1] == key[1]
            if input_ids.numel() and not same:
                hi, lo = torch.stack([input_ids.max(), input_ids.min()]).tolist()  # one host sync, not two
                if hi >= self.config.vocab_size or lo < 0:
                    raise RobustOFAError(f"input_ids: token ids must lie in [0, {self.config.vocab_size})")
                self._checked_ids = key
            if input_ids.shape[1] > self.config.max_position_embeddings:
                raise RobustOFAError(
                    f"input_ids: length {input_ids.shape[1]} exceeds max_position_embeddings "
                    f"{self.config.max_position_embeddings}"
                )
        if patch_images is None:
            return
        if patch_images.dim() != 4 or patch_images.shape[1] != 3:
            raise RobustOFAError(
                f"patch_images: expected (batch, 3, height, width) RGB, got shape {tuple(patch_images.shape)}"
            )
        h, w = patch_images.shape[-2:]
        if h % 16 or w % 16:
            raise RobustOFAError(f"patch_images: height and width must be multiples of 16, got {h}x{w}")
        limit = 16 * self.config.image_bucket_size
        if h > limit or w > limit:
            raise RobustOFAError(f"patch_images: {h}x{w} exceeds the position grid ({limit}x{limit} px max)")
        if input_ids is not None and patch_images.shape[0] != input_ids.shape[0]:
            raise RobustOFAError(
                f"patch_images: batch {patch_images.shape[0]} does not match input_ids batch {input_ids.shape[0]}"
            )

    def encode(self, input_ids: torch.Tensor, patch_images: torch.Tensor | None = None,
               patch_masks: torch.Tensor | None = None,
               token_embeddings: torch.Tensor | None = None,
               image_features: tuple[torch.Tensor, torch.Tensor] | None = None) -> OFAEncoderOutput:
        """Run the encoder once (reused across decoding steps, beams and answer candidates).

        ``image_features`` (from :meth:`embed_image`, batch 1 or the batch size) replaces ``patch_images``:
        the ResNet and patch projection then run once per image, not once per text.
        """
        self.check_inputs(input_ids, patch_images)
        return self.encoder(input_ids, patch_images, patch_masks, token_embeddings, image_features)

    def embed_image(self, patch_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch embeddings and grid ids of normalised images, for ``encode(image_features=...)``."""
        self.check_inputs(None, patch_images)
        return self.encoder._embed_image(patch_images)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        patch_images: torch.Tensor | None = None,
        patch_masks: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: OFAEncoderOutput | None = None,
        past_key_values: tuple | None = None,
        use_cache: bool = False,
        code_masks: torch.Tensor | None = None,
        token_embeddings: torch.Tensor | None = None,
        return_dict: bool = True,
        **unused,
    ) -> Seq2SeqLMOutput:
        """Logits for ``decoder_input_ids`` given the text/image encoder input.

        As in the port, with ``past_key_values`` the full ``decoder_input_ids`` are passed and only the
        last token is fed; ``attention_mask`` is the decoder's (1 = attend).
        """
        for name in ("patch_images_2", "sample_patch_num"):
            if unused.get(name) is not None:
                raise RobustOFAError(f"{name} is not supported by robust-ofa's OFA")
        if encoder_outputs is None:
            encoder_outputs = self.encode(input_ids, patch_images, patch_masks, token_embeddings)
        if decoder_input_ids is None:
            raise RobustOFAError("decoder_input_ids: required (start with the bos token id 0)")
        new_ids = decoder_input_ids[:, -1:] if past_key_values else decoder_input_ids
        logits, cache = self.decoder(new_ids, encoder_outputs, attention_mask, past_key_values, use_cache,
                                     code_masks)
        return Seq2SeqLMOutput(logits=logits, past_key_values=cache,
                               encoder_last_hidden_state=encoder_outputs.last_hidden_state)
