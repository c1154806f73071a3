"""Tuning methods: what each trains, parameter counts, gradient flow to the image, variant files."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import randomize, small_config

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.tuning import METHODS, count_trainable, get_method
from robustbench_ofa.tuning.prompt import prompt_param_count
from robustbench_ofa.tuning.variant import load_variant, save_variant

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels


def _fresh(method: str, **hp) -> OFAModel:
    torch.manual_seed(0)
    m = randomize(OFAModel(small_config()))
    get_method(method, **hp).apply(m)
    return m


def _trainable_names(m) -> set[str]:
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_registry_rejects_unknown_names_listing_the_registered_ones():
    with pytest.raises(RobustOFAError, match=re.escape(f"unknown tuning method 'promt'; valid: "
                                                       f"{', '.join(METHODS.names())}")):
        get_method("promt")
    with pytest.raises(RobustOFAError, match="unknown hyper-parameter.*lenght"):
        get_method("prompt", lenght=4)
    with pytest.raises(RobustOFAError, match="'depth' must be one of"):
        get_method("prompt", depth="middle")


def test_trainable_sets_are_exactly_the_methods_tensors():
    names = _trainable_names(_fresh("prompt", length=4))
    assert names == {"encoder.encoder_prompt_encoder.embedding.weight", "decoder.decoder_prompt_encoder.embedding.weight"}
    names = _trainable_names(_fresh("adapter", dim=8))
    assert names and all(".adapter." in n for n in names) and len(names) == 4 * (2 + 2)
    names = _trainable_names(_fresh("lora", rank=2))
    assert names and all(n.endswith(("lora_A", "lora_B")) for n in names)
    assert {n.rsplit(".", 2)[-2] for n in names} == {"q_proj", "v_proj"}
    names = _trainable_names(_fresh("bitfit"))
    assert names and all(n.endswith(".bias") for n in names)
    ofa = _trainable_names(_fresh("bitfit-ofa"))
    assert ofa < names
    assert "encoder.layers.0.fc1.bias" in ofa and "encoder.layers.0.final_layer_norm.bias" in ofa
    assert "encoder.layers.0.self_attn.q_proj.bias" not in ofa
    assert "encoder.layers.0.ffn_layer_norm.bias" not in ofa  # fairseq name ffn_layernorm: not in OFA's rule
    full = _fresh("finetune")
    assert count_trainable(full) == sum(p.numel() for p in full.parameters())


def test_prompt_parameter_counts_match_the_paper():
    assert prompt_param_count(64, 256, 4, 4) == 262_144  # tiny: 0.26M
    assert prompt_param_count(64, 768, 6, 6) == 1_179_648  # base: 1.18M
    for size, expected in (("tiny", 262_144), ("base", 1_179_648)):
        m = OFAModel(OFAConfig.from_size(size, resnet_layers=[1, 1, 1], vocab_size=64))
        get_method("prompt", length=64, depth="both").apply(m)
        assert count_trainable(m) == expected
    m = _fresh("prompt", length=4, depth="encoder", layers=1, reparam=True, reparam_dim=16)
    assert count_trainable(m) == 4 * 64 + (64 * 16 + 16) + (16 * 2 * 64 + 2 * 64)


# Every registered method gets this check with its own micro hyper-parameters in test_methods_registry.py;
# these are the configurations worth a second look.
@pytest.mark.parametrize("method, hp", [("prompt", dict(length=3, reparam=True)),
                                        ("prompt", dict(length=2, depth="decoder", layers=1)),
                                        ("lora", dict(rank=2, targets=["q_proj", "k_proj", "fc1"]))])
def test_a_training_step_changes_only_trainable_tensors_and_bn_stats_stay(method, hp, batch):
    m = _fresh(method, **hp)
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    ids, images, dec = batch
    m(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits.logsumexp(-1).mean().backward()
    opt.step()
    after = m.state_dict()
    trainable = _trainable_names(m)
    tied = {"decoder.embed_tokens.weight", "decoder.output_projection.weight"}
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    changed_params = {k for k in changed if "running_" not in k and "num_batches" not in k}
    if method == "finetune":
        trainable |= tied
    assert changed_params <= trainable
    assert changed_params, "nothing trained"
    assert not any("running_" in k for k in changed), "BatchNorm statistics must stay frozen"


@pytest.mark.parametrize("method, hp", [("prompt", dict(length=4)), ("adapter", dict(dim=8)), ("lora", dict(rank=2))])
def test_image_gradients_flow_through_the_added_modules(method, hp, batch):
    """Attacks need d(loss)/d(image) to depend on the tuned tensors."""
    ids, images, dec = batch
    m = _fresh(method, **hp).eval()
    added = [p for p in m.parameters() if p.requires_grad]

    def image_grad():
        x = images.clone().requires_grad_(True)
        m(input_ids=ids, patch_images=x, decoder_input_ids=dec).logits.logsumexp(-1).sum().backward()
        return x.grad.clone()

    g0 = image_grad()
    assert all(p.grad is not None for p in added)  # in the graph (LoRA's A gets 0 while B is 0)
    assert any(p.grad.abs().sum() > 0 for p in added)
    with torch.no_grad():
        for p in added:
            p.add_(torch.randn_like(p) * 0.5)
    assert not torch.allclose(g0, image_grad())


def test_lora_starts_as_the_base_model(batch):
    ids, images, dec = batch
    torch.manual_seed(0)
    base = randomize(OFAModel(small_config())).eval()
    ref = base(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    get_method("lora", rank=4).apply(base)
    torch.testing.assert_close(base(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits, ref)


def test_variant_round_trip_and_wrong_base_refused(tmp_path, batch):
    torch.manual_seed(0)
    base = randomize(OFAModel(small_config())).eval()
    base.save_pretrained(tmp_path / "base")
    tuned = OFAModel.from_pretrained(tmp_path / "base")
    get_method("prompt", length=4, depth="both").apply(tuned)
    with torch.no_grad():
        for p in tuned.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    tuned.eval()
    out = save_variant(tuned, tmp_path / "v", name="p4", task="ve", base_dir=tmp_path / "base")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "trainable.safetensors"]  # one card
    size = (out / "trainable.safetensors").stat().st_size
    assert size < 0.05 * (tmp_path / "base" / "model.safetensors").stat().st_size
    again = load_variant(out)
    ids, images, dec = batch
    torch.testing.assert_close(again(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits,
                               tuned(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits)
    assert again.variant_card.trainable_params == 2 * 4 * 2 * 2 * 64
    other = randomize(OFAModel(small_config()), seed=9)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(RobustOFAError, match="refusing to load it onto a different base"):
        load_variant(out, base_dir=tmp_path / "other")
