"""OFA's image pipeline and the box arithmetic that goes with it.

OFA feeds every image as a square, bicubic-resized RGB picture normalised with mean = std = 0.5. Here the
pipeline stops at a float tensor in [0, 1]: normalisation happens inside the model wrapper, so adversarial
attacks can work (and clip their epsilon balls) in ordinary pixel space. ``normalize``/``denormalize``
are the two halves of that split.

Grounding targets are boxes quantised into ``<bin_k>`` tokens. OFA resizes the image to a square, scales
the pixel box by the same factors, then maps each coordinate to
``round(coord / max_image_size * (num_bins - 1))``. ``max_image_size`` is OFA's constant (512 for RefCOCO)
and may differ from the actual resized side (e.g. prefix tuning at 480 px), which is why both exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from robustbench_ofa.errors import RobustOFAError

Box = tuple[float, float, float, float]

#: Pixel mean and std OFA normalises with (per channel, all three equal).
OFA_MEAN = 0.5
OFA_STD = 0.5


def _prefix(where: str) -> str:
    """``"file:line: "`` when the caller knows where the data came from, else nothing."""
    return f"{where}: " if where else ""


class ImageTransform:
    """PIL image -> RGB -> square bicubic resize -> float tensor (3, size, size) in [0, 1].

    Uses PIL's bicubic filter, which is what torchvision's ``Resize`` does for PIL inputs in OFA's code,
    so pixel values match OFA's pipeline without depending on torchvision.
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"ImageTransform size must be a positive int, got {size!r}")
        self.size = size

    def resize(self, image: Image.Image) -> Image.Image:
        """The resized RGB image (useful for saving what the model actually sees)."""
        return image.convert("RGB").resize((self.size, self.size), Image.BICUBIC)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(self.resize(image), dtype=np.float32) / 255.0
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size})"


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> OFA's [-1, 1] input ((x - 0.5) / 0.5); differentiable, so attacks pass through it."""
    return (x - OFA_MEAN) / OFA_STD


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize``: OFA's [-1, 1] input back to [0, 1] pixels."""
    return x * OFA_STD + OFA_MEAN


def validate_box(
    box: Sequence[float],
    width: float,
    height: float,
    *,
    field: str = "box",
    where: str = "",
    tolerance: float = 1.0,
) -> Box:
    """Check that ``box`` = [x0, y0, x1, y1] is a non-empty box inside a width x height image.

    Coordinates up to ``tolerance`` pixels outside the image are clamped rather than rejected: released
    annotations (COCO boxes converted from x, y, w, h) overshoot by rounding noise. Anything further out
    is a real error, reported with the field name (and ``where``, e.g. ``"file.tsv:12"``).
    """
    pre = _prefix(where)
    try:
        coords = [float(v) for v in box]
    except (TypeError, ValueError):
        raise RobustOFAError(f"{pre}field '{field}': expected 4 numbers x0,y0,x1,y1, got {box!r}") from None
    if len(coords) != 4 or not all(np.isfinite(coords)):
        raise RobustOFAError(f"{pre}field '{field}': expected 4 finite numbers x0,y0,x1,y1, got {box!r}")
    x0, y0, x1, y1 = coords
    if x1 <= x0 or y1 <= y0:
        raise RobustOFAError(f"{pre}field '{field}': expected x0 < x1 and y0 < y1, got {coords}")
    if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
        raise RobustOFAError(
            f"{pre}field '{field}': expected a box inside the {width:g}x{height:g} image, got {coords}"
        )
    return (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))


def scale_box(box: Sequence[float], image_size: tuple[int, int], size: int) -> Box:
    """Map a pixel box on the original (width, height) image onto the resized size x size image."""
    width, height = image_size
    sx, sy = size / width, size / height
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def unscale_box(box: Sequence[float], image_size: tuple[int, int], size: int) -> Box:
    """Inverse of ``scale_box``: resized-image box back to original pixels (where OFA measures IoU)."""
    width, height = image_size
    sx, sy = width / size, height / size
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def box_to_bins(
    box: Sequence[float],
    image_size: int,
    num_bins: int = 1000,
    max_image_size: int | None = None,
    *,
    field: str = "box",
) -> tuple[int, int, int, int]:
    """Quantise a box on the resized image (side ``image_size``) into OFA's bin indices.

    bin = round(coord / max_image_size * (num_bins - 1)), as OFA's RefCOCO dataset does (Python's
    round, like torch's, rounds halves to even). ``max_image_size`` defaults to ``image_size``; when the
    image is larger than ``max_image_size`` the bins are clamped to ``num_bins - 1`` so they stay valid
    tokens.
    """
    # The tiny tolerance absorbs float noise from scale_box (640 * (512 / 640) is not exactly 512).
    x0, y0, x1, y1 = validate_box(box, image_size, image_size, field=field, tolerance=1e-6)
    scale = (num_bins - 1) / float(max_image_size or image_size)
    bins = [min(max(round(c * scale), 0), num_bins - 1) for c in (x0, y0, x1, y1)]
    return (bins[0], bins[1], bins[2], bins[3])


def bins_to_box(
    bins: Sequence[int],
    image_size: int,
    num_bins: int = 1000,
    max_image_size: int | None = None,
) -> Box:
    """Bin indices back to a box on the resized image: coord = bin / (num_bins - 1) * max_image_size.

    Not clipped to the image, like OFA's evaluation; a decoded box may be empty or inverted, which simply
    scores IoU 0.
    """
    values = [int(b) for b in bins]
    if len(values) != 4 or any(b < 0 or b >= num_bins for b in values):
        raise ValueError(f"expected 4 bin indices in [0, {num_bins - 1}], got {list(bins)!r}")
    scale = float(max_image_size or image_size) / (num_bins - 1)
    return (values[0] * scale, values[1] * scale, values[2] * scale, values[3] * scale)


def collate_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-shaped (C, H, W) image tensors into a (N, C, H, W) batch."""
    if not images:
        raise ValueError("cannot collate an empty list of images")
    shape = tuple(images[0].shape)
    for i, image in enumerate(images):
        if tuple(image.shape) != shape:
            raise ValueError(f"image {i} has shape {tuple(image.shape)}, expected {shape} like image 0")
    return torch.stack(list(images), dim=0)
