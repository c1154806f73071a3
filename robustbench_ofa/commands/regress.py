"""``robust-ofa regress``: gate a run's robustness numbers against a stored baseline (exit 1 on regression)."""

from __future__ import annotations

import argparse

from robustbench_ofa.errors import RobustOFAError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regress", help="compare an evaluate run with a stored robustness baseline",
                       description=__doc__)
    p.add_argument("--baseline", required=True, help="baseline JSON (e.g. reports/baselines/embedded.json)")
    p.add_argument("--results", required=True, help="output directory of `robust-ofa evaluate`")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the default statistical gate")
    p.add_argument("--tolerance", type=float, default=None,
                   help="absolute allowance in accuracy (0.02 = 2 points) instead of the statistical test")
    p.add_argument("--exact", action="store_true", help="require identical counts (deterministic runs)")
    p.add_argument("--update", action="store_true",
                   help="deliberately refresh: write the run's numbers as the new baseline and exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_ofa import regress

    if args.update:
        path = regress.write_baseline(args.results, args.baseline)
        print(f"baseline written: {path}")
        return 0
    if not 0 < args.alpha < 1:
        raise RobustOFAError(f"--alpha: expected a value in (0, 1), got {args.alpha}")
    if args.tolerance is not None and not 0 <= args.tolerance <= 1:
        raise RobustOFAError(f"--tolerance: expected a value in [0, 1], got {args.tolerance}")
    baseline = regress.read_baseline(args.baseline)
    current = regress.numbers_from_results(args.results)
    regress.check_comparable(baseline, current, args.baseline)
    rows = regress.compare(baseline, current, args.alpha, args.tolerance, args.exact)
    print(regress.format_comparisons(rows))
    bad = [r for r in rows if r.status == "REGRESSION"]
    better = [r for r in rows if r.status == "improvement"]
    mode = "exact" if args.exact else (f"tolerance {args.tolerance}" if args.tolerance is not None
                                       else f"two-proportion test, alpha {args.alpha}")
    print(f"\n{len(rows)} numbers compared ({mode}): {len(bad)} regression(s), {len(better)} improvement(s)")
    return 1 if bad else 0
