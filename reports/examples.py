"""Example cards: clean and adversarial image, the perturbation made visible, predictions before/after.

Images come from the store's ``examples`` table (model-input PNGs). The perturbation is shown as
0.5 + k * (adv - clean), with k chosen so the largest change reaches the edge of the range, and k is
printed so nobody mistakes the amplified picture for the real one. Grounding boxes are drawn on the
images: stored boxes are in original-image pixels, so they are scaled by the sample's stored size
(``samples`` table); without it the original image is assumed to be the model input size.
Text attacks store the adversarial string (``kind='text'``); the words that differ from the original
sentence are marked, computed with a word-level diff.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustbench_ofa.tasks import TASK_REGISTRY

#: Samples shown per variant and task.
PER_VARIANT = 2
#: Display size of example images (pixels, nearest-neighbour upscaling keeps pixels visible).
DISPLAY = 160

_NUM = r"-?\d+(?:\.\d+)?"
_BOX = re.compile(rf"({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})")


def draws_boxes(task: str) -> bool:
    """Whether a task's predictions are boxes to draw on the image (``Task.output_kind``)."""
    return task in TASK_REGISTRY and TASK_REGISTRY.get(task).output_kind == "box"


@dataclass
class ImageExample:
    variant: str
    task: str
    uid: str
    attack: str
    eps_label: str
    norm: str
    fooled: bool
    clean_pred: str
    adv_pred: str
    clean_correct: bool
    adv_correct: bool
    text: str = ""
    reference: str = ""
    clean_uri: str = ""
    adv_uri: str = ""
    delta_uri: str = ""
    amplification: float = 0.0
    linf: float = 0.0


@dataclass
class TextExample:
    variant: str
    task: str
    uid: str
    attack: str
    eps_label: str
    fooled: bool
    clean_pred: str
    adv_pred: str
    #: (word, changed) pairs of the original and the adversarial sentence.
    before: list[tuple[str, bool]] = field(default_factory=list)
    after: list[tuple[str, bool]] = field(default_factory=list)


def parse_box(textval: str | None) -> tuple[float, float, float, float] | None:
    """Four numbers from '(x0, y0, x1, y1)' or '[x0, y0, x1, y1]'; None if the text is not a box."""
    if not textval:
        return None
    m = _BOX.search(str(textval))
    return tuple(float(g) for g in m.groups()) if m else None  # type: ignore[return-value]


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0


def _encode(arr: np.ndarray, boxes: list[tuple[tuple[float, ...], tuple[int, int, int]]] = (),
            scale: tuple[float, float] = (1.0, 1.0)) -> str:
    """Upscale (nearest), draw boxes (given in model-input pixels times ``scale``), return a data URI."""
    from PIL import Image, ImageDraw

    h, w = arr.shape[:2]
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype("uint8"))
    factor = max(1, DISPLAY // max(h, w))
    img = img.resize((w * factor, h * factor), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for box, colour in boxes:  # the reference comes last, thin, so a matching prediction does not hide it
        x0, y0, x1, y1 = (box[0] * scale[0] * factor, box[1] * scale[1] * factor,
                          box[2] * scale[0] * factor, box[3] * scale[1] * factor)
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=colour,
                       width=1 if colour == REF_COLOUR else 3)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


REF_COLOUR = (255, 215, 0)
CLEAN_COLOUR = (0, 200, 80)
ADV_COLOUR = (230, 30, 30)


def _sample_info(samples: pd.DataFrame) -> dict[tuple[str, str], dict]:
    if not len(samples):
        return {}
    return {(r.task, r.uid): r._asdict() for r in samples.itertuples(index=False)}


def _choose(cands: pd.DataFrame) -> pd.Series:
    """The first successful attack at the smallest budget; if none succeeded, the largest budget."""
    fooled = cands[cands.adv_correct == 0]
    if len(fooled):
        return fooled.sort_values(["eps", "order"]).iloc[0]
    return cands.sort_values(["eps", "order"]).iloc[-1]


def _candidates(examples: pd.DataFrame, results: pd.DataFrame, kind: str) -> pd.DataFrame:
    adv = examples[examples.kind == kind]
    if not len(adv) or not len(results):
        return pd.DataFrame()
    keys = ["variant", "task", "attack", "eps_label", "uid"]
    res = results[keys + ["norm", "eps", "adv_correct", "clean_correct", "clean_pred", "adv_pred", "linf"]]
    merged = adv.merge(res, on=keys, how="inner")
    order = {a: i for i, a in enumerate(dict.fromkeys(results.attack))}
    merged["order"] = merged.attack.map(order)
    return merged


def image_examples(examples: pd.DataFrame, samples: pd.DataFrame, results: pd.DataFrame,
                   variants: list[str], per_variant: int = PER_VARIANT) -> list[ImageExample]:
    """A few examples per (task, variant), fooled ones first, in the order the evaluator stored them."""
    if not len(examples):
        return []
    cands = _candidates(examples, results, "adv")
    if not len(cands):
        return []
    clean_png = {(r.variant, r.task, r.uid): r.png for r in examples[examples.kind == "image"].itertuples()}
    info = _sample_info(samples)
    out: list[ImageExample] = []
    for task in dict.fromkeys(cands.task):
        for variant in variants:
            sub = cands[(cands.task == task) & (cands.variant == variant)]
            chosen = [_choose(g) for _, g in sub.groupby("uid", sort=False)]
            chosen.sort(key=lambda r: int(r.adv_correct))  # fooled first, stable otherwise
            for r in chosen[:per_variant]:
                png = clean_png.get((variant, task, r.uid))
                if png is None or r.png is None:
                    continue
                out.append(_image_example(r, png, info.get((task, r.uid), {})))
    return out


def _image_example(r: pd.Series, clean_png: bytes, sample: dict) -> ImageExample:
    clean, adv = _decode(clean_png), _decode(r.png)
    delta = adv - clean if adv.shape == clean.shape else np.zeros_like(adv)
    peak = float(np.abs(delta).max())
    k = 0.5 / peak if peak > 0 else 1.0
    ex = ImageExample(variant=r.variant, task=r.task, uid=str(r.uid), attack=r.attack, eps_label=r.eps_label,
                      norm=r.norm, fooled=bool(int(r.clean_correct) == 1 and int(r.adv_correct) == 0),
                      clean_pred=str(r.clean_pred), adv_pred=str(r.adv_pred), clean_correct=bool(r.clean_correct),
                      adv_correct=bool(r.adv_correct), text=str(sample.get("text") or ""),
                      reference=str(sample.get("reference") or ""), amplification=k, linf=peak)
    boxes_clean, boxes_adv, scale = [], [], (1.0, 1.0)
    if draws_boxes(r.task):
        h, w = clean.shape[:2]
        if sample.get("width") and sample.get("height"):
            scale = (w / float(sample["width"]), h / float(sample["height"]))
        cb, ab = parse_box(r.clean_pred), parse_box(r.adv_pred)
        if cb:
            boxes_clean.append((cb, CLEAN_COLOUR))
        if ab:
            boxes_adv.append((ab, ADV_COLOUR))
        ref = _reference_box(sample.get("reference"))
        if ref:
            boxes_clean.append((ref, REF_COLOUR))
            boxes_adv.append((ref, REF_COLOUR))
    ex.clean_uri = _encode(clean, boxes_clean, scale)
    ex.adv_uri = _encode(adv, boxes_adv, scale)
    ex.delta_uri = _encode(0.5 + k * delta)
    return ex


def _reference_box(ref) -> tuple[float, float, float, float] | None:
    if ref is None:
        return None
    try:
        value = json.loads(ref)
        if isinstance(value, list) and len(value) == 4:
            return tuple(float(v) for v in value)  # type: ignore[return-value]
    except (TypeError, ValueError):
        pass
    return parse_box(ref)


def word_diff(before: str, after: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Words of both sentences, each marked True where it is not part of the longest common matching."""
    a, b = before.split(), after.split()
    ma, mb = [True] * len(a), [True] * len(b)
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for i in range(block.size):
            ma[block.a + i] = False
            mb[block.b + i] = False
    return list(zip(a, ma)), list(zip(b, mb))


def text_examples(examples: pd.DataFrame, samples: pd.DataFrame, results: pd.DataFrame,
                  variants: list[str], per_variant: int = PER_VARIANT) -> list[TextExample]:
    """Adversarial sentences (examples of kind 'text') against the stored original sentence."""
    if not len(examples) or not (examples.kind == "text").any():
        return []
    cands = _candidates(examples, results, "text")
    info = _sample_info(samples)
    out: list[TextExample] = []
    if not len(cands):
        return out
    for task in dict.fromkeys(cands.task):
        for variant in variants:
            sub = cands[(cands.task == task) & (cands.variant == variant)]
            chosen = [_choose(g) for _, g in sub.groupby("uid", sort=False)]
            chosen.sort(key=lambda r: int(r.adv_correct))
            for r in chosen[:per_variant]:
                original = str(info.get((task, r.uid), {}).get("text") or "")
                before, after = word_diff(original, str(r.text or ""))
                out.append(TextExample(variant=variant, task=task, uid=str(r.uid), attack=r.attack,
                                       eps_label=r.eps_label, fooled=bool(r.clean_correct and not r.adv_correct),
                                       clean_pred=str(r.clean_pred), adv_pred=str(r.adv_pred),
                                       before=before, after=after))
    return out


def success_examples(won: pd.DataFrame | None) -> list[TextExample]:
    """The seeded sample of successful adversarial texts (``text_successes.csv``: every text attack and
    variant, not only the example samples), each against its original with the changed words marked."""
    if won is None or not len(won):
        return []
    out = []
    for r in won.itertuples():
        before, after = word_diff(str(r.original or ""), str(r.adversarial or ""))
        out.append(TextExample(variant=r.variant, task=r.task, uid=str(r.uid), attack=r.attack,
                               eps_label=r.eps_label, fooled=True, clean_pred=str(r.clean_pred),
                               adv_pred=str(r.adv_pred), before=before, after=after))
    return out
