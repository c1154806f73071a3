"""Build the embedded model zoo from nothing and report wall time, peak memory and clean metrics.

    .venv/bin/python scripts/build_zoo_timed.py              # fresh temporary home, removed afterwards
    .venv/bin/python scripts/build_zoo_timed.py --home DIR   # build (or reuse) the zoo in DIR
    .venv/bin/python scripts/build_zoo_timed.py --micro      # the seconds-long test recipe
    .venv/bin/python scripts/build_zoo_timed.py --caption    # the on-demand caption zoo instead

Targets (issue #3): the whole embedded zoo in <= 10 minutes on 2 CPU cores with peak RSS <= 4 GB.
Wall time is measured around ``ensure_embedded`` (imports excluded, reported separately); peak RSS is
``getrusage(RUSAGE_SELF).ru_maxrss`` of this process (the build runs in-process). Timings on a shared
machine are noisy: run it a few times.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="robust-ofa home to build in (default: a fresh temp dir)")
    parser.add_argument("--micro", action="store_true", help="build the tiny test recipe instead")
    parser.add_argument("--caption", action="store_true", help="build the caption zoo (EMBEDDED_CAPTION) instead")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from robustbench_ofa import zoo
    from robustbench_ofa.commands.zoo import format_table

    import_s = time.perf_counter() - T_START
    from robustbench_ofa.zoo.recipe import EMBEDDED_CAPTION

    recipe = zoo.micro_recipe() if args.micro else EMBEDDED_CAPTION if args.caption else zoo.EMBEDDED
    temp = args.home is None
    home = Path(tempfile.mkdtemp(prefix="robust-ofa-zoo-")) if temp else Path(args.home)
    try:
        t0 = time.perf_counter()
        root = zoo.ensure_embedded(home, progress=not args.quiet, recipe=recipe)
        build_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        cards = zoo.list_models(home, recipe=recipe)
        print(format_table([c for c in cards if c.source == "embedded"]))
        print()
        for c in cards:
            if c.source == "embedded":
                print(f"{c.name:22s} built in {c.build_seconds:7.1f} s")
        print(f"\nzoo: {root}")
        print(f"imports: {import_s:.1f} s   build: {build_s:.1f} s ({build_s / 60:.2f} min)   "
              f"peak RSS: {peak_mb:.0f} MiB")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "recipe": recipe.prefix, "fingerprint": recipe.fingerprint(), "build_seconds": round(build_s, 1),
                "import_seconds": round(import_s, 1), "peak_rss_mib": round(peak_mb), "root": str(root),
                "cards": [c.to_dict() for c in cards if c.source == "embedded"],
            }, indent=2))
    finally:
        if temp:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
