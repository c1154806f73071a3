"""OFA-PT deep prefix prompts (Yang et al.): learned keys/values in front of every self-attention.

Per layer, P key and P value vectors are concatenated before the self-attention keys/values of the
encoder and/or decoder (after the k/v projections; never in cross-attention). The generator is an
``Embedding(P, 2*L*d)``, or with reparameterisation ``Embedding(P, d) -> Linear(d, r) -> ReLU ->
Linear(r, 2*L*d)``; dropout 0.2 on the generated prompts. Parameter names follow fairseq
(``encoder.encoder_prompt_encoder.embedding.weight``, ``.trans.0/2``) so OFA-PT checkpoints load.
Only the generators train; BatchNorm statistics stay frozen (the original script forgot this).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod

DEPTHS = ("encoder", "decoder", "both")


class PromptGenerator(nn.Module):
    """Generates per-layer prefix keys/values, laid out as fairseq's ``PromptEncoder`` output."""

    def __init__(self, length: int, num_layers: int, d_model: int, num_heads: int, reparam: bool = False,
                 reparam_dim: int | None = None, dropout: float = 0.2, init_std: float = 0.02):
        super().__init__()
        self.length = length
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        out = num_layers * 2 * d_model
        if reparam:
            self.embedding = nn.Embedding(length, d_model)
            hidden = reparam_dim or 2 * d_model
            self.trans = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, out))
        else:
            self.embedding = nn.Embedding(length, out)
            self.trans = None
        self.dropout = nn.Dropout(dropout)
        for m in self.modules():
            if isinstance(m, (nn.Embedding, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, init_std)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, bsz: int, model_layers: int) -> list:
        """List over the stack's layers of (k, v), each (B, H, P, head_dim); None past ``num_layers``."""
        x = self.embedding.weight
        if self.trans is not None:
            x = self.trans(x)
        x = self.dropout(x)
        # (P, 2L*d) -> (2L, H, P, hd): fairseq views (B, P, 2L, H, hd) and permutes to (2L, B, H, P, hd).
        x = x.view(self.length, 2 * self.num_layers, self.num_heads, self.head_dim).permute(1, 2, 0, 3)
        x = x.unsqueeze(1).expand(-1, bsz, -1, -1, -1)
        kv = [(x[2 * i], x[2 * i + 1]) for i in range(self.num_layers)]
        return kv + [None] * (model_layers - self.num_layers)


@dataclass
class PromptConfig(MethodConfig):
    length: int = field(default=64, metadata={"help": "prompt length(s), e.g. 10,16,32,64"})
    depth: str = field(default="both", metadata={"help": "encoder, decoder and/or both"})
    #: Prompt only the first k layers of each prompted stack (None = all layers).
    layers: int | None = field(default=None, metadata={"help": "prompt only the first k layers (none: all)"})
    reparam: bool = field(default=False, metadata={"help": "reparameterisation on/off (or on,off)"})
    reparam_dim: int | None = field(default=None, metadata={"help": "reparameterisation width (none: 2 x d_model)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout on the generated prompts"})


def _generator_attr(side: str) -> str:
    """The stack attribute holding a side's prompt generator (fairseq's name)."""
    return f"{side}_prompt_encoder"


def _generator_key(side: str, rest: str) -> str:
    """A prompt generator tensor's name, e.g. ``encoder.encoder_prompt_encoder.embedding.weight``."""
    return f"{side}.{_generator_attr(side)}.{rest}"


@METHODS.register("prompt")
class PromptTuning(TuningMethod):
    config_cls = PromptConfig
    default_lr = 1e-2
    grid_flags = {"prompt-length": "length", "prompt-depth": "depth", "reparam": "reparam"}

    def validate(self) -> None:
        c = self.config
        if c.length < 1:
            raise RobustOFAError(f"prompt: 'length' must be >= 1, got {c.length}")
        if c.depth not in DEPTHS:
            raise RobustOFAError(f"prompt: 'depth' must be one of {', '.join(DEPTHS)}, got {c.depth!r}")
        if c.layers is not None and c.layers < 1:
            raise RobustOFAError(f"prompt: 'layers' must be >= 1, got {c.layers}")
        if not 0.0 <= c.dropout < 1.0:
            raise RobustOFAError(f"prompt: 'dropout' must lie in [0, 1), got {c.dropout}")

    def add_modules(self, model) -> None:
        cfg, c = model.config, self.config
        sides = {"encoder": ("encoder",), "decoder": ("decoder",), "both": ("encoder", "decoder")}[c.depth]
        for side in sides:
            stack = getattr(model, side)
            n_layers = len(stack.layers)
            k = n_layers if c.layers is None else c.layers
            if k > n_layers:
                raise RobustOFAError(f"prompt: 'layers'={k} exceeds the {side}'s {n_layers} layers")
            heads = getattr(cfg, f"{side}_attention_heads")
            gen = PromptGenerator(c.length, k, cfg.d_model, heads, c.reparam, c.reparam_dim, c.dropout,
                                  cfg.init_std)
            setattr(stack, _generator_attr(side), gen.to(model.device))

    def trainable(self, name, param) -> bool:
        return "_prompt_encoder." in name

    @classmethod
    def micro_hparams(cls, hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {**hparams, "length": max(1, hparams.get("length", PromptConfig.length) // 8)}

    @classmethod
    def detect(cls, state, config) -> dict[str, Any] | None:
        sides = [s for s in ("encoder", "decoder") if _generator_key(s, "embedding.weight") in state]
        if not sides:
            return None
        side = sides[0]
        emb = state[_generator_key(side, "embedding.weight")]
        reparam = _generator_key(side, "trans.0.weight") in state
        last = state[_generator_key(side, "trans.2.weight")].shape[0] if reparam else emb.shape[1]
        layers = last // (2 * config.d_model)
        full = getattr(config, f"{side}_layers")
        depth = "both" if len(sides) == 2 else side
        hp: dict[str, Any] = dict(length=emb.shape[0], depth=depth, reparam=reparam,
                                  layers=None if layers == full else layers)
        if reparam:
            hp["reparam_dim"] = state[_generator_key(side, "trans.0.weight")].shape[0]
        return hp


def prompt_param_count(length: int, d_model: int, enc_layers: int, dec_layers: int) -> int:
    """Parameters of encoder+decoder prompts without reparameterisation (for the notes' figures)."""
    return length * 2 * d_model * (enc_layers + dec_layers)


__all__ = ["PromptGenerator", "PromptConfig", "PromptTuning", "prompt_param_count"]
