"""OFAModel forward: shapes, key layout, caching, attention paths, masks and bad-input errors."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize, small_config

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.modeling import INDEX_BUFFERS

#: Published OFA key lists and configs (copied from the OFA-Sys checkpoints' key dumps in shared/ofa).
SHARED = __import__("pathlib").Path(__file__).resolve().parent / "data" / "ofa"


def _tsv_shapes(name: str) -> dict[str, tuple]:
    rows = (SHARED / name).read_text().splitlines()
    return {k: eval(s) for k, s in (r.split("\t") for r in rows)}


def test_tiny_state_dict_matches_published_keys_and_shapes():
    published = _tsv_shapes("keys_tiny.tsv")
    sd = OFAModel(OFAConfig.from_size("tiny")).state_dict()
    learned = {k: v for k, v in published.items() if k.rsplit(".", 1)[-1] not in INDEX_BUFFERS}
    assert set(sd) == set(learned)
    assert all(tuple(sd[k].shape) == learned[k] for k in sd)


def test_forward_shapes_with_image_and_text_only(model, batch):
    ids, images, dec = batch
    out = model(input_ids=ids, patch_images=images, decoder_input_ids=dec)
    assert out.logits.shape == (2, 4, model.config.vocab_size)
    assert out.encoder_last_hidden_state.shape == (2, 16 + 5, 64)  # 64 px -> 4x4 patches
    text_only = model(input_ids=ids, decoder_input_ids=dec)
    assert text_only.encoder_last_hidden_state.shape == (2, 5, 64)
    assert torch.isfinite(text_only.logits).all()


def test_kv_cache_matches_full_forward(model, batch):
    ids, images, dec = batch
    full = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    enc = model.encode(ids, images)
    past, steps = None, []
    for t in range(dec.shape[1]):
        logits, past = model.decoder(dec[:, t:t + 1], enc, past_key_values=past, use_cache=True)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # the port's calling convention: full decoder ids + past -> only the last token is fed
    out = model(encoder_outputs=enc, decoder_input_ids=dec[:, :2], past_key_values=None, use_cache=True)
    nxt = model(encoder_outputs=enc, decoder_input_ids=dec[:, :3], past_key_values=out.past_key_values)
    torch.testing.assert_close(nxt.logits[:, 0], full[:, 2], atol=1e-5, rtol=1e-5)


def test_sdpa_equals_eager_attention(model, batch):
    ids, images, dec = batch
    a = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    model.set_attention_impl("eager")
    b = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(RobustOFAError, match="expected one of sdpa, eager"):
        model.set_attention_impl("flash")


def test_padding_does_not_change_a_sample(model, batch):
    ids, images, dec = batch
    alone = model(input_ids=ids[1:, :4], patch_images=images[1:], decoder_input_ids=dec[1:]).logits
    padded = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits[1:]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


def test_the_accelerator_always_masks_and_gets_the_same_outputs(model, batch, monkeypatch):
    """On an accelerator the padding mask is applied whether or not there are pads (asking would be a host
    sync per attack step); a CPU run skips it when there are none. Forced here onto the CPU: the outputs of
    a batch without pads, and their image gradient, are the ones the skipping path computes."""
    from robustbench_ofa.models import modeling

    ids, images, dec = batch
    unpadded = ids[:1]

    def run():
        img = images[:1].clone().requires_grad_(True)
        logits = model(input_ids=unpadded, patch_images=img, decoder_input_ids=dec[:1]).logits
        logits.sum().backward()
        return logits.detach(), img.grad

    asked = []
    monkeypatch.setattr(modeling, "_may_have_pads", lambda pad: asked.append(1) or bool(pad.any()))
    skipped = run()
    monkeypatch.setattr(modeling, "_may_have_pads", lambda pad: asked.append(1) or True)
    masked = run()
    assert asked  # the encoder consulted the switch both times
    torch.testing.assert_close(masked, skipped, atol=1e-6, rtol=1e-6)


def test_decoder_attention_mask_masks_and_patch_masks_match_the_port(model, batch):
    ids, images, dec = batch
    base = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    mask = torch.ones_like(dec)
    mask[:, 1] = 0
    masked = model(input_ids=ids, patch_images=images, decoder_input_ids=dec, attention_mask=mask).logits
    assert torch.allclose(base[:, :1], masked[:, :1], atol=1e-6)  # row 0 never sees position 1
    assert not torch.allclose(base[:, 2:], masked[:, 2:])
    # the port ignores patch_masks for the first image; so do we (parity with the reference)
    same = model(input_ids=ids, patch_images=images, decoder_input_ids=dec,
                 patch_masks=torch.tensor([True, False])).logits
    torch.testing.assert_close(same, base)


def test_bf16_autocast_runs(model, batch):
    ids, images, dec = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    ref = model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.5 * ref.abs().max()


def test_gradient_reaches_the_image(model, batch):
    ids, images, dec = batch
    x = images.clone().requires_grad_(True)
    model(input_ids=ids, patch_images=x, decoder_input_ids=dec).logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "shape, message",
    [((2, 3, 60, 64), "multiples of 16"), ((2, 1, 64, 64), r"\(batch, 3, height, width\)"),
     ((2, 3, 64 * 50, 64), "exceeds the position grid"), ((3, 3, 64, 64), "does not match input_ids batch")],
)
def test_bad_images_raise_one_line_errors(model, batch, shape, message):
    ids, _, dec = batch
    with pytest.raises(RobustOFAError, match=message) as exc:
        model(input_ids=ids, patch_images=torch.zeros(shape), decoder_input_ids=dec)
    assert "\n" not in str(exc.value)


def test_bad_token_ids_and_config_errors(model, batch):
    ids, images, dec = batch
    with pytest.raises(RobustOFAError, match="token ids must lie in"):
        model(input_ids=ids + 1000, patch_images=images, decoder_input_ids=dec)
    with pytest.raises(RobustOFAError, match="not divisible"):
        OFAModel(small_config(encoder_attention_heads=5))
    with pytest.raises(RobustOFAError, match="resnet_type"):
        OFAModel(small_config(resnet_layers=None, resnet_type="resnet7"))


def test_randomised_models_differ_by_seed():
    a = randomize(OFAModel(small_config()), seed=1)
    b = randomize(OFAModel(small_config()), seed=2)
    assert not torch.equal(a.encoder.image_proj.weight, b.encoder.image_proj.weight)


def test_resnet_runs_channels_last_but_returns_nchw_input_gradients():
    """The backbone computes in channels-last layout for CPU speed; values must match the NCHW path and
    input gradients must come back NCHW-contiguous (attack code calls ``grad.view``)."""
    from robustbench_ofa.models.resnet import ResNet

    torch.manual_seed(0)
    net = ResNet([1, 1, 1], base_planes=4).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = net(x)
    out.sum().backward()
    assert x.grad.is_contiguous() and x.grad.view(2, -1).shape == (2, 3 * 32 * 32)
    with torch.no_grad():  # the same layers on the NCHW tensor, without the layout change
        ref = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
