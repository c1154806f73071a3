"""Field checks shared by the data readers and the tasks' own record formats (one error shape).

Every problem with a user's data is one ``RobustOFAError``: ``FILE:LINE: field 'X': expected ..., got ...``.
The TSV cell parsers (``parse_*``) and the JSON field readers (``json_*``) live here, below both the
readers (``data.tsv``, ``data.manifest``) and the tasks (``robustbench_ofa.tasks``), which say which
fields they read.
"""

from __future__ import annotations

from PIL import Image

from robustbench_ofa.data.transforms import Box, validate_box
from robustbench_ofa.errors import RobustOFAError

#: SNLI-VE label words (and OFA's own answer words) -> OFA's answer words.
VE_LABEL_MAP: dict[str, str] = {
    "entailment": "yes",
    "contradiction": "no",
    "neutral": "maybe",
    "yes": "yes",
    "no": "no",
    "maybe": "maybe",
}


def _one_line(text: object, limit: int = 120) -> str:
    """Squash an arbitrary message or value into a short single line for an error message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def show_value(value: object) -> str:
    """A user's value as it should appear in an error message: its repr, on one line, shortened."""
    return _one_line(repr(value))


def field_error(where: str, field: str, expected: str, got: str | None = None) -> RobustOFAError:
    """The project's error shape: ``FILE:LINE: field 'X': expected ..., got ...``.

    ``got`` is already-formatted text: a description ("an empty cell") or ``show_value(value)``.
    """
    tail = f", got {got}" if got is not None else ""
    return RobustOFAError(f"{where}: field '{field}': expected {expected}{tail}")


def parse_region_coord(text: str, image: Image.Image, *, where: str, field: str = "region_coord") -> Box:
    """``"x0,y0,x1,y1"`` in pixels -> a validated box inside ``image`` (see ``validate_box``)."""
    parts = text.strip().split(",")
    if len(parts) != 4:
        raise field_error(where, field, "4 comma-separated numbers x0,y0,x1,y1", show_value(text))
    try:
        coords = [float(p) for p in parts]
    except ValueError:
        raise field_error(where, field, "4 comma-separated numbers x0,y0,x1,y1", show_value(text)) from None
    return validate_box(coords, image.width, image.height, field=field, where=where)


def parse_ve_label(text: str, *, where: str, field: str = "label") -> str:
    """SNLI-VE label -> yes/no/maybe (OFA's mapping: entailment/contradiction/neutral)."""
    label = VE_LABEL_MAP.get(text.strip().lower())
    if label is None:
        raise field_error(
            where, field, "one of entailment/neutral/contradiction (or yes/maybe/no)", show_value(text)
        )
    return label


def parse_vqa_ref(text: str, *, where: str, field: str = "ref") -> tuple[dict[str, float], list[str]]:
    """Parse ``conf|!+answer&&conf|!+answer...`` into (scores, answers).

    ``scores`` are OFA's soft scores, kept exactly (OFA's evaluation credits a prediction with its score).
    OFA's files hold those scores instead of the ten raw human answers, so ``answers`` reconstructs
    a list of repeats whose min(n/3, 1) accuracy matches the score: each answer appears
    ``clamp(round(conf * 3), 1, 3)`` times (0.3 -> 1, 0.6 -> 2, >= 0.9 -> 3), highest score first, so
    ``answers[0]`` is OFA's training target. Answers with a score of 0 are dropped. The VQA task
    credits a prediction with ``scores`` itself (``metrics.vqa_answer_metric``: "soft"), correct at a
    score >= 0.5 (a 0.6 or 1.0 answer, not a 0.3 one): the same answers the repeats' min(n/3, 1) >= 0.5
    counted correct.
    """
    scores: dict[str, float] = {}
    for item in text.strip().split("&&"):
        conf_text, sep, answer = item.partition("|!+")
        answer = answer.strip()
        try:
            conf = float(conf_text)
        except ValueError:
            conf = float("nan")
        if not sep or not answer or not (0.0 <= conf <= 1.0):
            raise field_error(
                where, field, "'conf|!+answer' items joined by '&&' (conf in [0, 1])", show_value(item)
            )
        scores[answer] = max(conf, scores.get(answer, 0.0))
    ranked = sorted((a for a in scores if scores[a] > 0), key=lambda a: -scores[a])
    if not ranked:
        raise field_error(where, field, "at least one answer with a positive score", show_value(text))
    answers = [a for a in ranked for _ in range(min(3, max(1, round(scores[a] * 3))))]
    return scores, answers


def parse_captions(text: str, *, where: str, field: str = "caption") -> list[str]:
    """Reference captions joined by ``&&`` -> list, blanks dropped (a training file has one per row)."""
    captions = [" ".join(c.split()) for c in text.split("&&")]
    captions = [c for c in captions if c]
    if not captions:
        raise field_error(where, field, "one or more captions joined by '&&'", show_value(text))
    return captions




def json_string(obj: dict, key: str, where: str, *, required: bool = True) -> str | None:
    """A non-empty string field (stripped); ``None`` when optional and absent."""
    if key not in obj or obj[key] is None:
        if required:
            raise field_error(where, key, "a non-empty string", "nothing (field missing)")
        return None
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise field_error(where, key, "a non-empty string", show_value(value))
    return value.strip()


def json_string_list(obj: dict, key: str, where: str) -> list[str]:
    """A required non-empty list of non-empty strings."""
    if key not in obj:
        raise field_error(where, key, "a non-empty list of strings", "nothing (field missing)")
    value = obj[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise field_error(where, key, "a non-empty list of non-empty strings", show_value(value))
    return [v.strip() for v in value]


def json_choice(obj: dict, key: str, where: str, choices: tuple[str, ...]) -> str | None:
    """An optional field that must be one of ``choices`` (compared lower-cased); ``None`` when absent."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in choices:
        raise field_error(where, key, f"one of {'/'.join(choices)}", show_value(value))
    return word


def json_score_map(obj: dict, key: str, where: str) -> dict[str, float] | None:
    """An optional ``{answer: score in [0, 1]}`` object (OFA's soft VQA scores); ``None`` when absent."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if (
        not isinstance(value, dict)
        or not value
        or not all(isinstance(a, str) and a.strip() for a in value)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in value.values())
    ):
        raise field_error(where, key, "an object mapping answers to scores in [0, 1]", show_value(value))
    return {a.strip(): float(v) for a, v in value.items()}


def json_box(obj: dict, where: str, width: int, height: int, key: str = "box") -> Box:
    if key not in obj:
        raise field_error(where, key, "[x0, y0, x1, y1] in pixels", "nothing (field missing)")
    value = obj[key]
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise field_error(where, key, "a list of 4 numbers [x0, y0, x1, y1]", show_value(value))
    return validate_box(value, width, height, field=key, where=where)


class TsvRow:
    """One TSV line as named cells, with the error location attached."""

    def __init__(self, cells: dict[str, str], where: str) -> None:
        self.cells = cells
        self.where = where

    def text(self, name: str) -> str:
        """A required, non-empty text cell (surrounding whitespace removed)."""
        value = self.cells.get(name, "").strip()
        if not value:
            raise field_error(self.where, name, "a non-empty value", "an empty cell")
        return value

    def optional(self, name: str) -> str | None:
        value = self.cells.get(name, "").strip()
        return value or None
