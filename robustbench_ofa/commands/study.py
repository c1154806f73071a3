"""``robust-ofa study plan|run|report STUDY.toml``: a whole experiment (tune -> evaluate -> report) from one file.

``plan`` checks the file and prints the commands it runs (nothing is trained or loaded); ``run`` runs the
steps not done yet (resumable; a changed file over an old run is refused unless ``--allow-changed``);
``report`` writes the reports of a study's evaluation again. The file format is in
``robustbench_ofa.study.spec``; shipped studies are in ``studies/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser("study", help="run a study file: tune variants, evaluate them, report",
                                  description=__doc__)
    sub = study.add_subparsers(dest="study_command", required=True)
    for name, help_text, handler in (("plan", "check a study file and print the commands it runs", _cmd_plan),
                                     ("run", "run the steps of a study not done yet (resumable)", _cmd_run),
                                     ("report", "write a study's reports again", _cmd_report)):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("file", help="study file (TOML)")
        p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="set a variable (NAME=VALUE) or override a field (SECTION.KEY=VALUE, e.g. "
                            "evaluate.n-samples=8); repeatable")
        p.add_argument("--out", default=None, help="run folder (default: the file's study.out, else runs/NAME)")
        if name == "plan":
            p.add_argument("--world-size", type=int, default=None, metavar="N",
                           help="show each variant's split over N processes (default: torchrun's WORLD_SIZE, else 1)")
        if name == "run":
            p.add_argument("--allow-changed", action="store_true",
                           help="continue a run folder made with another version of the file or other --set values")
        if name == "report":
            p.add_argument("--format", default="html,pdf", help="report formats (html, pdf, md, tex)")
        p.set_defaults(handler=handler)


def _load(args: argparse.Namespace):
    from robustbench_ofa.study import build_steps, load_study

    spec = load_study(args.file, args.set)
    root = Path(args.out or spec.out)
    return spec, build_steps(spec, root), root


def _cmd_plan(args: argparse.Namespace) -> int:
    spec, steps, root = _load(args)
    print(f"study {spec.name} ({spec.path}, sha256 {spec.sha256[:12]}): {len(steps)} steps -> {root}")
    if spec.description:
        print(f"  {spec.description}")
    for name in sorted(spec.vars):
        print(f"  var {name} = {spec.vars[name]!r}")
    import os

    from robustbench_ofa.errors import RobustOFAError

    world = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1:
        raise RobustOFAError(f"--world-size: expected a positive process count, got {world}")
    for i, step in enumerate(steps, 1):
        state = "done" if step.done() else "to run"
        print(f"[{i}] {step.kind} {step.name} ({state}):\n    {step.command()}")
        if step.kind == "tune":
            split = step.split(world)
            print(f"    global batch {split.batch} = micro-batch {split.micro_batch} x {split.accumulation} "
                  f"accumulation step(s) x {world} process(es)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from robustbench_ofa.study import run_study

    spec, steps, root = _load(args)
    run_study(spec, steps, root, allow_changed=args.allow_changed)
    print(f"study {spec.name}: complete -> {root}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from robustbench_ofa.commands.report import write_reports
    from robustbench_ofa.study.run import check_record

    spec, steps, root = _load(args)
    check_record(spec, root, allow_changed=False)
    for path in write_reports(steps[-1].out, formats=args.format):
        print(f"report: {path}")
    return 0
