"""fairseq (OFA code base) checkpoints: key renames to the HF layout and config inference.

OFA's fairseq ``.pt`` files hold a ``model`` dict (plus training state). Their parameter names differ
from the HF port in a few module names; the renames below are applied segment by segment, in OFA's
documented order. Tuned checkpoints use the same names once renamed; the modules a tuning method adds
are recognised, and their hyper-parameters read off the tensor shapes, by the method itself
(``TuningMethod.detect``, asked through ``loading.load_fairseq``), so this module knows no method.
"""

from __future__ import annotations

import re

import torch

from robustbench_ofa.errors import RobustOFAError

#: fairseq module name -> HF port module name (whole dotted segments only).
FAIRSEQ_TO_HF = {
    "self_attn_ln": "self_attn_mid_layer_norm",
    "ffn_layernorm": "ffn_layer_norm",
    "cross_attn_ln": "cross_attn_mid_layer_norm",
    "encoder_attn": "cross_attn",
    "encoder_attn_layer_norm": "cross_attn_layer_norm",
    "attn_ln": "self_attn_mid_layer_norm",
}
_HF_TO_FAIRSEQ = {
    "self_attn_mid_layer_norm": "self_attn_ln",
    "ffn_layer_norm": "ffn_layernorm",
    "cross_attn_mid_layer_norm": "cross_attn_ln",
    "cross_attn": "encoder_attn",
    "cross_attn_layer_norm": "encoder_attn_layer_norm",
}
_DROP = re.compile(r"(^|\.)(version|_float_tensor)$")


def fairseq_to_hf_name(name: str) -> str:
    return ".".join(FAIRSEQ_TO_HF.get(seg, seg) for seg in name.split("."))


def hf_to_fairseq_name(name: str) -> str:
    return ".".join(_HF_TO_FAIRSEQ.get(seg, seg) for seg in name.split("."))


def convert_fairseq_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """Rename a fairseq ``model`` dict to HF keys, dropping ``version``/``_float_tensor`` entries."""
    out = {}
    for key, value in state.items():
        if _DROP.search(key) or not isinstance(value, torch.Tensor):
            continue
        out[fairseq_to_hf_name(key)] = value
    return out


def _count_layers(keys, prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def infer_config_fields(state: dict[str, torch.Tensor]) -> dict:
    """Architecture fields implied by tensor shapes (used when no config.json accompanies the file)."""
    try:
        vocab, d = state["encoder.embed_tokens.weight"].shape
        heads = state["encoder.layers.0.self_attn.c_attn"].shape[0]
        dec_heads = state["decoder.layers.0.self_attn.c_attn"].shape[0]
        fields = dict(
            vocab_size=vocab, d_model=d,
            encoder_layers=_count_layers(state, "encoder"), decoder_layers=_count_layers(state, "decoder"),
            encoder_attention_heads=heads, decoder_attention_heads=dec_heads,
            encoder_ffn_dim=state["encoder.layers.0.fc1.weight"].shape[0],
            decoder_ffn_dim=state["decoder.layers.0.fc1.weight"].shape[0],
            max_position_embeddings=state["encoder.embed_positions.weight"].shape[0] - 2,
            token_bucket_size=(state["encoder.token_rel_pos_table_list.0.weight"].shape[0] + 1) // 2,
            resnet_layers=[_count_blocks(state, i) for i in (1, 2, 3)],
        )
    except KeyError as exc:
        raise RobustOFAError(f"checkpoint: cannot infer the architecture, key {exc.args[0]!r} is missing") from None
    n_img = state["encoder.embed_image_positions.weight"].shape[0]
    fields["image_bucket_size"] = int(round((n_img - 1) ** 0.5))
    return fields


def _count_blocks(state, stage: int) -> int:
    ids = {int(m.group(1)) for k in state if (m := re.match(rf"encoder\.embed_images\.layer{stage}\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0
