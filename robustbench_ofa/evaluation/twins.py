"""Which variants are twins: trained alike apart from adversarial training (``Evaluator._sources``,
``reports.frontier``). Here, not in ``cards``, because it reads the training layer's ``ADV_FIELDS``."""

from __future__ import annotations

import json
from typing import Any

#: Training settings that change how a run is logged or where it runs, not the model it makes.
OPERATIONAL_TRAIN_FIELDS = ("device", "num_threads", "log_every", "checkpoint_every", "eval_every",
                            "eval_batch_size")


def twin_recipe(card: dict[str, Any]) -> str | None:
    """A digest of how a variant was trained apart from adversarial training: its tasks, data and training
    settings without the ``adv*`` fields (``TrainConfig`` ``ADV_FIELDS``) and the operational ones. A
    robust-trained variant's standard twin has the same digest (and base, method and hyper-parameters),
    so a variant tuned on other tasks or for 10x the steps is never taken for its twin. None for a card
    without training settings (a registered checkpoint): no twin can be told apart then."""
    import hashlib

    from robustbench_ofa.training.config import ADV_FIELDS

    train = card.get("train")
    if not train:
        return None
    kept = {k: v for k, v in train.items() if k not in ADV_FIELDS and k not in OPERATIONAL_TRAIN_FIELDS}
    blob = json.dumps({"tasks": sorted(card.get("tasks") or []), "data": card.get("data") or {}, "train": kept},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
