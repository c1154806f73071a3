"""Attacks on OFA variants: image attacks (torchattacks) and text attacks (TextAttack), by name."""
