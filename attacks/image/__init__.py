"""Image attacks, one module each (as torchattacks lays them out); importing this package registers them.

``fgsm``, ``pgd`` and ``pgdl2`` run on the project's early-stopping engines (step for step torchattacks'
rules, see ``attacks.engines``); the others are torchattacks' own classes on the task view.
"""

from attacks.image import (  # noqa: F401  (registration)
    apgd,
    apgdt,
    autoattack,
    cw,
    eot_pgd,
    fgsm,
    pgd,
    pgd_margin,
    pgd_targeted,
    pgdl2,
    square,
    transfer,
)
