"""Which variants are twins: trained alike apart from adversarial training (``Evaluator._sources``,
``reports.frontier``). Here, not in ``cards``, because it reads the training layer's ``ADV_FIELDS``."""

from __future__ import annotations

import json
from typing import Any

#: Training settings that change how a run is logged or where it runs, not the model it makes. The seed is
#: here too: two runs that differ only in their seed are trained alike (the comparison of a robust-trained
#: variant with its twin is a comparison of training methods, like any single-seed comparison).
OPERATIONAL_TRAIN_FIELDS = ("device", "num_threads", "log_every", "checkpoint_every", "eval_every",
                            "eval_batch_size", "seed")

#: Data settings that only shape the clean evaluation after training (no checkpoint is chosen by it).
EVAL_ONLY_DATA_FIELDS = ("eval", "eval_beam")


def _numbers_as_floats(value: Any) -> Any:
    """``weight_decay=0`` from a study file and ``0.0`` from the command line train the same model."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers_as_floats(v) for v in value]
    return value


def _recipe_train(train: dict[str, Any]) -> dict[str, Any]:
    from robustbench_ofa.training.config import ADV_FIELDS

    kept = {k: v for k, v in train.items() if k not in ADV_FIELDS and k not in OPERATIONAL_TRAIN_FIELDS}
    if "bf16" in train:  # what autocast did: None means "on when the device is CUDA"
        bf16 = train["bf16"]
        kept["bf16"] = bool(bf16) if bf16 is not None else str(train.get("device") or "cpu").startswith("cuda")
    return kept


def _recipe_data(data: dict[str, Any]) -> dict[str, Any]:
    """The training data: the samples trained on (``train_samples``: count and digest of their ids per
    task) where the card records them, so the same manifest named by a relative and an absolute path
    matches; else the training specs as given (cards from before ``train_samples``)."""
    kept = {k: v for k, v in data.items() if k not in EVAL_ONLY_DATA_FIELDS}
    if "train_samples" in kept:
        kept.pop("train", None)
    return kept


def twin_recipe(card: dict[str, Any]) -> str | None:
    """A digest of how a variant was trained apart from adversarial training: its tasks, training data,
    answer sets and training settings, without the ``adv*`` fields (``TrainConfig`` ``ADV_FIELDS``), the
    operational ones and the evaluation-only ones. A robust-trained variant's standard twin has the same
    digest (and base, method and hyper-parameters), so a variant tuned on other tasks, other data, another
    answer set or for 10x the steps is never taken for its twin. None for a card without training settings
    (a registered checkpoint): no twin can be told apart then."""
    import hashlib

    train = card.get("train")
    if not train:
        return None
    answers = {t: (a or {}).get("sha256") for t, a in (card.get("answers") or {}).items()}
    blob = json.dumps(_numbers_as_floats({"tasks": sorted(card.get("tasks") or []),
                                          "data": _recipe_data(card.get("data") or {}),
                                          "answers": answers, "train": _recipe_train(train)}),
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
