"""Attacks on OFA variants, one module per attack, all in one registry (``attacks.registry.ATTACKS``).

Importing this package registers every attack: image attacks (``attacks.image``), text recipes
(``attacks.text.recipes``) and the joint co-attack (``attacks.text.joint``). None of them imports
TextAttack or torchattacks at registration; they are imported when an attack runs.
"""

from attacks import image  # noqa: F401  (registration)
from attacks.registry import ATTACKS, AttackParams, AttackSpec, register, run_attack, specs
from attacks.text import joint, recipes  # noqa: F401  (registration)
from attacks.threat import Threat

__all__ = ["ATTACKS", "AttackParams", "AttackSpec", "Threat", "register", "run_attack", "specs"]
