"""OFA's image pipeline and box arithmetic, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_ofa.data.transforms import (
    ImageTransform,
    bins_to_box,
    box_to_bins,
    collate_images,
    denormalize,
    normalize,
    scale_box,
    unscale_box,
    validate_box,
)
from robustbench_ofa.errors import RobustOFAError


def _gradient_image(width: int = 40, height: int = 30) -> Image.Image:
    xs = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    array = np.broadcast_to(xs, (height, width, 3)).copy()
    array[..., 1] = 100
    return Image.fromarray(array, "RGB")


def test_image_transform_shape_range_and_dtype():
    out = ImageTransform(16)(_gradient_image())
    assert out.shape == (3, 16, 16)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_image_transform_matches_pil_bicubic_resize():
    image = _gradient_image()
    expected = np.asarray(image.resize((24, 24), Image.BICUBIC), dtype=np.float32) / 255.0
    out = ImageTransform(24)(image)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-7)


def test_image_transform_converts_grayscale_and_keeps_constant_colour():
    gray = Image.new("L", (10, 7), color=51)
    out = ImageTransform(8)(gray)
    assert out.shape == (3, 8, 8)
    assert torch.allclose(out, torch.full((3, 8, 8), 51 / 255.0))


def test_image_transform_rejects_bad_size():
    with pytest.raises(ValueError):
        ImageTransform(0)


def test_normalize_maps_unit_interval_to_ofa_range_and_back():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(normalize(x), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.allclose(denormalize(normalize(x)), x)


def test_normalize_is_differentiable():
    x = torch.rand(3, requires_grad=True)
    normalize(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 2.0))


def test_scale_box_hand_computed():
    # 640x480 -> 512x512: x scales by 0.8, y by 512/480.
    assert scale_box((64, 48, 320, 240), (640, 480), 512) == pytest.approx((51.2, 51.2, 256.0, 256.0))


def test_unscale_box_inverts_scale_box():
    box = (13.0, 7.5, 300.25, 211.0)
    back = unscale_box(scale_box(box, (333, 250), 480), (333, 250), 480)
    assert back == pytest.approx(box)


def test_box_to_bins_hand_computed():
    assert box_to_bins((0, 0, 512, 512), 512) == (0, 0, 999, 999)
    # 256 / 512 * 999 = 499.5 exactly: rounds half to even -> 500, like torch.round in OFA.
    # 128 / 512 * 999 = 249.75 -> 250; 384 -> 749.25 -> 749; 511 -> 997.048... -> 997.
    assert box_to_bins((256, 128, 384, 511), 512) == (500, 250, 749, 997)


def test_box_to_bins_with_max_image_size_larger_than_image():
    # Prefix-tuning setting: 480 px images, OFA's max_image_size 512: 480 / 512 * 999 = 936.5625 -> 937.
    assert box_to_bins((0, 0, 480, 480), 480, max_image_size=512) == (0, 0, 937, 937)


def test_box_to_bins_num_bins():
    assert box_to_bins((0, 0, 50, 100), 100, num_bins=11) == (0, 0, 5, 10)


def test_box_to_bins_accepts_float_noise_from_scaling():
    scaled = scale_box((0, 0, 640, 480), (640, 480), 512)
    assert box_to_bins(scaled, 512) == (0, 0, 999, 999)


def test_bins_to_box_inverse_within_half_a_bin():
    box = (17.3, 40.0, 300.9, 511.0)
    back = bins_to_box(box_to_bins(box, 512), 512)
    half_bin = 512 / 999 / 2
    assert all(abs(a - b) <= half_bin + 1e-9 for a, b in zip(back, box))
    assert bins_to_box((0, 999, 999, 999), 512) == pytest.approx((0.0, 512.0, 512.0, 512.0))


def test_bins_to_box_uses_max_image_size():
    assert bins_to_box((999, 0, 999, 999), 480, max_image_size=512) == pytest.approx((512, 0, 512, 512))


def test_bins_to_box_rejects_invalid_bins():
    with pytest.raises(ValueError):
        bins_to_box((0, 0, 1000, 5), 512)
    with pytest.raises(ValueError):
        bins_to_box((0, 0, 5), 512)


@pytest.mark.parametrize(
    "box",
    [(10, 10, 10, 20), (10, 10, 5, 20), (10, 20, 30, 20)],
)
def test_box_to_bins_rejects_empty_boxes_naming_the_field(box):
    with pytest.raises(RobustOFAError, match="field 'box'.*x0 < x1"):
        box_to_bins(box, 512)


def test_box_to_bins_rejects_box_outside_image():
    with pytest.raises(RobustOFAError, match="field 'target': expected a box inside the 512x512 image"):
        box_to_bins((0, 0, 600, 100), 512, field="target")


def test_validate_box_clamps_within_tolerance_and_names_location():
    assert validate_box((-0.5, 0, 100.5, 50), 100, 50) == (0.0, 0.0, 100.0, 50.0)
    with pytest.raises(RobustOFAError) as info:
        validate_box((-5, 0, 10, 10), 100, 50, field="region_coord", where="data.tsv:3")
    message = str(info.value)
    assert message.startswith("data.tsv:3: field 'region_coord': expected a box inside")
    assert "\n" not in message


def test_validate_box_rejects_non_numbers():
    with pytest.raises(RobustOFAError, match="field 'box': expected 4"):
        validate_box(("a", 0, 1, 1), 10, 10)
    with pytest.raises(RobustOFAError, match="field 'box': expected 4"):
        validate_box((0, 1, 1), 10, 10)
    with pytest.raises(RobustOFAError, match="field 'box': expected 4 finite"):
        validate_box((0, 0, float("nan"), 1), 10, 10)


def test_collate_images_stacks_and_checks_shapes():
    batch = collate_images([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert batch.shape == (2, 3, 4, 4)
    assert float(batch[1].sum()) == 48.0
    with pytest.raises(ValueError, match="image 1"):
        collate_images([torch.zeros(3, 4, 4), torch.zeros(3, 5, 5)])
    with pytest.raises(ValueError):
        collate_images([])
