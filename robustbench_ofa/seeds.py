"""Per-sample seeds: one stable 31-bit seed from any parts (run seed, model, attack, budget, sample uid).

Why its own module: the evaluation (attack random starts, text-attack search) and adversarial training
(the training attack's random starts) draw from the same rule, and training sits below evaluation in
the package's layers. Never Python's salted ``hash``: a seed must not change between processes.
"""

from __future__ import annotations

import hashlib


def sample_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
