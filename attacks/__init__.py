"""Attacks on OFA variants: image attacks (torchattacks rules) by name, on every OFA task."""

from attacks.registry import ATTACKS, AttackParams, AttackSpec, run_attack

__all__ = ["ATTACKS", "AttackParams", "AttackSpec", "run_attack"]
