"""The ``robust-ofa`` command line.

Every user-facing failure is a ``RobustOFAError``: printed as one line on stderr with exit status 2,
never a traceback. Subcommands live in small modules and register themselves here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from robustbench_ofa import __version__
from robustbench_ofa.errors import RobustOFAError

Handler = Callable[[argparse.Namespace], int]


def _cmd_info(args: argparse.Namespace) -> int:
    from robustbench_ofa.models.config import SIZE_PRESETS
    from robustbench_ofa.tuning import METHODS

    print(f"robust-ofa {__version__}")
    print("OFA sizes:       " + ", ".join(SIZE_PRESETS))
    print("tuning methods:  " + ", ".join(METHODS.names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robust-ofa", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robust-ofa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="list OFA sizes and registered tuning methods")
    p.set_defaults(handler=_cmd_info)
    for register in _subcommand_registrars():
        register(sub)
    return parser


def _subcommand_registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommand modules listed in ``robustbench_ofa.commands.MODULES``."""
    import importlib

    from robustbench_ofa.commands import MODULES

    return [importlib.import_module(m).register for m in MODULES]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except RobustOFAError as exc:
        print(f"robust-ofa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robust-ofa: interrupted; completed work is kept and a rerun resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
