"""Measure the text attacks' validity checks on the hand-labelled pairs and calibrate the word-sense
threshold (``attacks.text.calibration``; the pairs and how they were labelled: ``tests/data/README.md``).

    python scripts/calibrate_text_validity.py            # the table, and the threshold it picks
    python scripts/calibrate_text_validity.py --show     # also every same pair rejected, changed pair kept

Exit 1 when the shipped ``attacks.text.validity.SENSE_MIN_COS`` is not the calibrated one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attacks.text.calibration import GRID, calibrate, rates, read_pairs, score  # noqa: E402
from attacks.text.resources import import_textattack, require  # noqa: E402
from attacks.text.validity import SENSE_MIN_COS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=ROOT / "tests" / "data" / "text_validity_pairs.tsv")
    parser.add_argument("--show", action="store_true", help="list the pairs the shipped checks get wrong")
    args = parser.parse_args(argv)
    res = require(("wordnet", "minilm", "tagger"))
    import_textattack(res)
    pairs = score(read_pairs(args.pairs), res)
    print(f"{len(pairs)} pairs ({sum(p.same for p in pairs)} same), {args.pairs}")
    print("rule checks alone (antonym, cohyponym, pos): " + rates(pairs, -1.0).line())
    print("| sense threshold | calibration half | held-out half | all |\n|---|---|---|---|")
    for t in GRID:
        print(f"| {t:.2f} | " + " | ".join(rates(pairs, t, h).line() for h in ("calibration", "held-out", None)) + " |")
    chosen = calibrate(pairs)
    print(f"calibrated threshold: {chosen:.2f} (shipped SENSE_MIN_COS {SENSE_MIN_COS:.2f}); at the shipped one, "
          f"held out: {rates(pairs, SENSE_MIN_COS, 'held-out').line()}; all: {rates(pairs, SENSE_MIN_COS).line()}")
    if args.show:
        for p in pairs:
            if p.kept(SENSE_MIN_COS) != p.same:
                what = "same, rejected" if p.same else "changed, kept"
                print(f"  {what} ({p.rejected_by or f'cos {p.cosine:.3f}'}): {p.original} -> {p.substituted}")
    return 0 if chosen == SENSE_MIN_COS else 1


if __name__ == "__main__":
    raise SystemExit(main())
