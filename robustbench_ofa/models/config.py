"""OFAConfig: every field of the OFA-Sys HF-format ``config.json``, plus presets for each size.

Field names and defaults follow the published checkpoints (see ``shared/ofa/configs.json``) so a user's
``config.json`` loads unchanged. Two fields are project additions and default to the published
behaviour: ``resnet_layers`` (block counts of ResNet stages 1-3, to build a small backbone for the
embedded model), ``resnet_base_planes`` (width of the ResNet stem; 64 in OFA, smaller for the CPU-trained
embedded model) and ``max_image_size`` (the largest patch grid the 2-D position table can index).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from robustbench_ofa.errors import RobustOFAError

#: Bottleneck blocks in ResNet stages 1-3 for each named backbone (OFA keeps stages 1-3 only).
RESNET_LAYERS = {
    "resnet18": [2, 2, 2],  # OFA builds these from bottleneck blocks too
    "resnet34": [3, 4, 6],
    "resnet50": [3, 4, 6],
    "resnet101": [3, 4, 23],
    "resnet152": [3, 8, 36],
}

#: Architecture fields per OFA size, as published by OFA-Sys.
SIZE_PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=256, encoder_ffn_dim=1024, decoder_ffn_dim=1024, encoder_layers=4, decoder_layers=4,
                 encoder_attention_heads=4, decoder_attention_heads=4, resnet_type="resnet50"),
    "medium": dict(d_model=512, encoder_ffn_dim=2048, decoder_ffn_dim=2048, encoder_layers=4, decoder_layers=4,
                   encoder_attention_heads=8, decoder_attention_heads=8, resnet_type="resnet101"),
    "base": dict(d_model=768, encoder_ffn_dim=3072, decoder_ffn_dim=3072, encoder_layers=6, decoder_layers=6,
                 encoder_attention_heads=12, decoder_attention_heads=12, resnet_type="resnet101"),
    "large": dict(d_model=1024, encoder_ffn_dim=4096, decoder_ffn_dim=4096, encoder_layers=12,
                  decoder_layers=12, encoder_attention_heads=16, decoder_attention_heads=16,
                  resnet_type="resnet152"),
    "huge": dict(d_model=1280, encoder_ffn_dim=5120, decoder_ffn_dim=5120, encoder_layers=24,
                 decoder_layers=12, encoder_attention_heads=16, decoder_attention_heads=16,
                 resnet_type="resnet152"),
}


class OFAConfig(PretrainedConfig):
    """Configuration of an OFA encoder-decoder (HF-format field names)."""

    model_type = "ofa"

    def __init__(
        self,
        vocab_size: int = 59457,
        max_position_embeddings: int = 1024,
        encoder_layers: int = 4,
        encoder_ffn_dim: int = 1024,
        encoder_attention_heads: int = 4,
        decoder_layers: int = 4,
        decoder_ffn_dim: int = 1024,
        decoder_attention_heads: int = 4,
        encoder_layerdrop: float = 0.0,
        decoder_layerdrop: float = 0.0,
        use_cache: bool = True,
        is_encoder_decoder: bool = True,
        activation_function: str = "gelu",
        d_model: int = 256,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        init_std: float = 0.02,
        classifier_dropout: float = 0.0,
        scale_embedding: bool = False,
        pad_token_id: int = 1,
        bos_token_id: int = 0,
        decoder_start_token_id: int = 0,
        eos_token_id: int = 2,
        forced_eos_token_id: int = 2,
        encoder_normalize_before: bool = True,
        decoder_normalize_before: bool = True,
        normformer: bool = True,
        encoder_drop_path_rate: float = 0.0,
        decoder_drop_path_rate: float = 0.0,
        layernorm_embedding: bool = True,
        patch_layernorm_embedding: bool = True,
        resnet_type: str = "resnet50",
        resnet_model_path: str | None = None,
        resnet_drop_path_rate: float = 0.0,
        token_bucket_size: int = 256,
        image_bucket_size: int = 42,
        add_type_embedding: bool = True,
        share_decoder_input_output_embed: bool = True,
        attn_scale_factor: float = 2.0,
        code_layernorm_embedding: bool = True,
        code_image_size: int = 128,
        entangle_position_embedding: bool = False,
        resnet_layers: list[int] | None = None,
        resnet_base_planes: int = 64,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.d_model = d_model
        self.encoder_ffn_dim = encoder_ffn_dim
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_ffn_dim = decoder_ffn_dim
        self.decoder_layers = decoder_layers
        self.decoder_attention_heads = decoder_attention_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation_function = activation_function
        self.init_std = init_std
        self.encoder_layerdrop = encoder_layerdrop
        self.decoder_layerdrop = decoder_layerdrop
        self.classifier_dropout = classifier_dropout
        self.use_cache = use_cache
        self.num_hidden_layers = encoder_layers
        self.scale_embedding = scale_embedding
        self.encoder_normalize_before = encoder_normalize_before
        self.decoder_normalize_before = decoder_normalize_before
        self.normformer = normformer
        self.encoder_drop_path_rate = encoder_drop_path_rate
        self.decoder_drop_path_rate = decoder_drop_path_rate
        self.layernorm_embedding = layernorm_embedding
        self.patch_layernorm_embedding = patch_layernorm_embedding
        self.resnet_type = resnet_type
        self.resnet_model_path = resnet_model_path
        self.resnet_drop_path_rate = resnet_drop_path_rate
        self.token_bucket_size = token_bucket_size
        self.image_bucket_size = image_bucket_size
        self.add_type_embedding = add_type_embedding
        self.share_decoder_input_output_embed = share_decoder_input_output_embed
        self.attn_scale_factor = attn_scale_factor
        self.code_layernorm_embedding = code_layernorm_embedding
        self.code_image_size = code_image_size
        self.entangle_position_embedding = entangle_position_embedding
        self.resnet_layers = list(resnet_layers) if resnet_layers is not None else None
        self.resnet_base_planes = resnet_base_planes
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            is_encoder_decoder=is_encoder_decoder,
            decoder_start_token_id=decoder_start_token_id,
            forced_eos_token_id=forced_eos_token_id,
            **kwargs,
        )

    @classmethod
    def from_size(cls, size: str, **overrides) -> OFAConfig:
        """Config of a published OFA size (tiny/medium/base/large/huge) with optional overrides."""
        if size not in SIZE_PRESETS:
            raise RobustOFAError(f"unknown OFA size {size!r}; expected one of {', '.join(SIZE_PRESETS)}")
        return cls(**{**SIZE_PRESETS[size], **overrides})

    def backbone_layers(self) -> list[int]:
        """Block counts of ResNet stages 1-3 (``resnet_layers`` overrides ``resnet_type``)."""
        if self.resnet_layers is not None:
            if len(self.resnet_layers) != 3 or min(self.resnet_layers) < 1:
                raise RobustOFAError(
                    f"config field 'resnet_layers': expected 3 positive block counts, got {self.resnet_layers}"
                )
            return list(self.resnet_layers)
        if self.resnet_type not in RESNET_LAYERS:
            raise RobustOFAError(
                f"config field 'resnet_type': expected one of {', '.join(RESNET_LAYERS)}, got {self.resnet_type!r}"
            )
        return RESNET_LAYERS[self.resnet_type]

    def validate(self) -> None:
        """Raise a one-line error for inconsistent architecture fields before any tensor is allocated."""
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if heads <= 0 or self.d_model % heads:
                raise RobustOFAError(
                    f"config field '{side}_attention_heads': d_model={self.d_model} is not divisible by {heads}"
                )
        if not isinstance(self.resnet_base_planes, int) or self.resnet_base_planes < 1:
            raise RobustOFAError(
                f"config field 'resnet_base_planes': expected a positive int, got {self.resnet_base_planes!r}"
            )
        if self.token_bucket_size < 4:
            raise RobustOFAError("config field 'token_bucket_size': expected >= 4")
        self.backbone_layers()
