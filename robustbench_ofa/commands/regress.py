"""``robust-ofa regress``: gate a run's robustness numbers against a stored baseline (exit 1 on regression).

Sample by sample when the baseline has per-sample data (written by ``--update`` since baseline format 2):
variants whose weights are the baseline's (same SHA-256) fail on more than ``--allow-flips`` samples turned
wrong per number (``--allow-flips-total`` over all); retrained variants get McNemar's exact test per number
(Holm-corrected) and a sign-flip test over all numbers. Count-only baselines get the old two-proportion
test. Every run prints the smallest drop it would detect with 80 % probability.
"""

from __future__ import annotations

import argparse

from robustbench_ofa.errors import RobustOFAError


def register(sub: argparse._SubParsersAction) -> None:
    from robustbench_ofa.regress import ALLOW_FLIPS, ALLOW_FLIPS_TOTAL

    p = sub.add_parser("regress", help="compare an evaluate run with a stored robustness baseline",
                       description=__doc__)
    p.add_argument("--baseline", required=True, help="baseline JSON (e.g. reports/baselines/embedded.json)")
    p.add_argument("--results", required=True, help="output directory of `robust-ofa evaluate`")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="false-alarm rate of the statistical gate (paired: alpha/2 per-number family, alpha/2 "
                        "aggregate; count-only baselines: per number)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="absolute allowance in accuracy (0.02 = 2 points): count-only baselines fail on a larger "
                        "drop instead of the test; with per-sample data a number must also fall by more than it")
    p.add_argument("--aggregate-tolerance", type=float, default=None,
                   help="retrained weights: mean drop over all paired numbers the aggregate test must also exceed "
                        "(default: --tolerance)")
    p.add_argument("--allow-flips", type=int, default=ALLOW_FLIPS,
                   help=f"same weights: samples per number that may turn wrong (float noise; default {ALLOW_FLIPS})")
    p.add_argument("--allow-flips-total", type=int, default=ALLOW_FLIPS_TOTAL,
                   help=f"same weights: samples over all numbers that may turn wrong (default {ALLOW_FLIPS_TOTAL})")
    p.add_argument("--exact", action="store_true",
                   help="require identical counts (count-only baseline) or identical per-sample correctness")
    p.add_argument("--explain", action="store_true",
                   help="print, per failing number, the samples that turned wrong (uid, clean/adversarial output)")
    p.add_argument("--report", default=None,
                   help="report formats to re-render with the regression section (default: those already in "
                        "the results directory; '' for none)")
    p.add_argument("--update", action="store_true",
                   help="deliberately refresh: print what changes against the current baseline (if any), write "
                        "the run's numbers as the new baseline and exit")
    p.add_argument("--require-same-weights", action="store_true",
                   help="fail (exit 1) unless every variant's weights are the baseline's: a gate of the "
                        "evaluation code on fixed weights must not fall back to the paired test silently")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_ofa import regress

    if args.update:
        return _update(args.results, args.baseline)
    if not 0 < args.alpha < 1:
        raise RobustOFAError(f"--alpha: expected a value in (0, 1), got {args.alpha}")
    for flag, value in (("--tolerance", args.tolerance), ("--aggregate-tolerance", args.aggregate_tolerance)):
        if value is not None and not 0 <= value <= 1:
            raise RobustOFAError(f"{flag}: expected a value in [0, 1], got {value}")
    for flag, value in (("--allow-flips", args.allow_flips), ("--allow-flips-total", args.allow_flips_total)):
        if value < 0:
            raise RobustOFAError(f"{flag}: expected a count >= 0, got {value}")
    baseline = regress.read_baseline(args.baseline)
    current = regress.numbers_from_results(args.results)
    if args.require_same_weights:
        regress.require_same_weights(baseline, current, args.baseline)
    regress.check_comparable(baseline, regress.align(baseline, current)[0], args.baseline)
    g = regress.gate(baseline, current, args.alpha, args.tolerance, args.exact, allow_flips=args.allow_flips,
                     allow_flips_total=args.allow_flips_total, aggregate_tolerance=args.aggregate_tolerance)
    power = regress.power_table(g)
    print(regress.format_comparisons(g))
    print()
    print(regress.format_power(power))
    settings = {"alpha": args.alpha, "tolerance": args.tolerance, "aggregate_tolerance": args.aggregate_tolerance,
                "exact": args.exact,
                "allow_flips": args.allow_flips, "allow_flips_total": args.allow_flips_total}
    regress.write_record(args.results, regress.gate_record(g, power, str(args.baseline), settings))
    _rerender(args.results, args.report)
    if args.explain:
        print()
        print(regress.explain(args.results, g))
    bad = [r for r in g.rows if r.status in regress.FAILING] + [a for a in g.aggregates
                                                                 if a.status in regress.FAILING]
    better = [r for r in g.rows if r.status == "improvement"]
    modes = sorted({r.mode for r in g.rows})
    mode = "exact" if args.exact else ", ".join(modes)
    if args.tolerance is not None:
        mode += f", tolerance {args.tolerance}"
    if args.aggregate_tolerance is not None:
        mode += f", aggregate tolerance {args.aggregate_tolerance}"
    print(f"\n{len(g.rows)} numbers compared ({mode}; alpha {args.alpha}): {len(bad)} failure(s) (regressions, "
          f"or numbers that rose on the same weights), {len(better)} improvement(s)")
    return 1 if bad else 0


def _update(results: str, baseline: str) -> int:
    """Write the run as the new baseline, after printing what that changes against the old one."""
    from pathlib import Path

    from robustbench_ofa import regress

    new = regress.numbers_from_results(results)
    if Path(baseline).exists():
        try:
            old = regress.read_baseline(baseline)
        except RobustOFAError as exc:
            print(f"replacing an unreadable baseline ({exc})")
        else:
            changes = regress.describe_update(old, new)
            print(f"changes against the current baseline {baseline}:" if changes
                  else f"no change against the current baseline {baseline}")
            for line in changes:
                print(f"  {line}")
    else:
        print(f"no baseline at {baseline} yet")
    path = regress.write_baseline(results, baseline, data=new)
    print(f"baseline written: {path}")
    return 0


def _rerender(results: str, formats: str | None) -> None:
    """Re-render the run's reports so their regression section shows this gate."""
    from pathlib import Path

    from robustbench_ofa.commands.report import FILE_NAMES, parse_formats, write_reports

    if formats is None:
        formats = ",".join(f for f, name in FILE_NAMES.items() if (Path(results) / name).exists())
    if formats.strip():
        write_reports(results, parse_formats(formats, "--report"))
