"""``robust-ofa evaluate``: attack zoo variants on OFA tasks and write results, aggregates and reports.

With only ``--attack pgd`` it evaluates the embedded zoo's variants (building the zoo on first use) on
the embedded benchmark's downstream test split. The output directory holds ``results.sqlite`` (one row
per sample, variant, attack and eps), aggregates (JSON/CSV, written only once the run is complete) and
the reports; rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError

DEFAULT_OUT = "robust-ofa-results"


def register(sub: argparse._SubParsersAction) -> None:
    """The options are generated from ``EvalConfig``, ``AttackParams`` and each registered attack's options
    dataclass (defaults, help and checks live there); only where the run reads and writes is listed here."""
    from attacks.registry import AttackParams, option_classes, options_help
    from robustbench_ofa.configcli import add_arguments
    from robustbench_ofa.evaluation.config import EvalConfig
    from robustbench_ofa.tasks import TASK_REGISTRY

    p = sub.add_parser("evaluate", help="attack OFA variants and write robustness results", description=__doc__)
    add_arguments(p, EvalConfig)
    p.add_argument("--model", action="append", default=None,
                   help="zoo name or path (variant folder or HF-format folder); repeatable; default: the embedded zoo")
    p.add_argument("--task", default=None, help="comma-separated tasks (default: the tasks the models were tuned "
                                                "on; registered: " + ", ".join(TASK_REGISTRY.names()) + ")")
    p.add_argument("--data", default=None, help="data source, e.g. synthetic:downstream_test, manifest:PATH, tsv:PATH:FORMAT")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default ./{DEFAULT_OUT})")
    p.add_argument("--home", default=None, help="robust-ofa cache directory (default $ROBUST_OFA_HOME or ~/.cache/robust-ofa)")
    p.add_argument("--report", default="html,pdf", help="report formats written at the end ('' for none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--study-record", default=None, help=argparse.SUPPRESS)  # written by `robust-ofa study run`
    add_arguments(p.add_argument_group("attack budget (iterative attacks)"), AttackParams)
    titles = options_help()
    for oc in option_classes():
        add_arguments(p.add_argument_group(f"options of {titles[oc]}"), oc, dest_prefix=_prefix(oc))
    p.set_defaults(handler=run)


def _prefix(options_cls: type) -> str:
    return options_cls.__name__ + "."


def build_config(args: argparse.Namespace, tasks: list[str]):
    """The run's ``EvalConfig`` from the parsed options, validated (every check made before any work)."""
    from attacks.registry import AttackParams, option_classes
    from robustbench_ofa.configcli import values_from_args
    from robustbench_ofa.evaluation.config import EvalConfig

    options = {oc: oc(**values_from_args(oc, args, _prefix(oc))) for oc in option_classes()}
    params = AttackParams(**values_from_args(AttackParams, args), options=options)
    cfg = EvalConfig(**values_from_args(EvalConfig, args), tasks=tasks, params=params)
    cfg.validate()
    if cfg.has_text_attacks():  # offline resources are checked before any model is built
        from attacks.text.resources import require

        require(sorted(cfg.text_needs()))
    return cfg


def requested_tasks(args: argparse.Namespace) -> list[str]:
    """The ``--task`` list, canonical names (empty when not given: the models' own tasks are used)."""
    from robustbench_ofa.tasks import canonical_task

    return [canonical_task(t) for t in args.task.split(",") if t.strip()] if args.task else []


def run(args: argparse.Namespace) -> int:
    from robustbench_ofa.commands.checks import evaluate_args

    evaluate_args(args)  # --out and --report: refused before anything is built, loaded or attacked
    from robustbench_ofa.evaluation import distributed

    build_config(args, [])  # cheap checks first: attack names and budgets, before any process group
    dist, device = distributed.from_env(args.device)
    try:
        return _run(args, dist, device)
    finally:
        dist.close()


def _run(args: argparse.Namespace, dist, device: str) -> int:
    """The evaluation; under torchrun every rank runs this, rank 0 alone writes files and prints."""
    from robustbench_ofa.evaluation import models as evm
    from robustbench_ofa.evaluation.distributed import check_same_weights, distributed_info
    from robustbench_ofa.evaluation.outputs import clear_aggregates, format_summary, write_aggregates
    from robustbench_ofa.evaluation.precision import compile_mark
    from robustbench_ofa.evaluation.runner import Evaluator
    from robustbench_ofa.evaluation.store import ResultsStore
    from robustbench_ofa.tasks import get_task

    t0 = time.time()
    asked = requested_tasks(args) or None
    quiet = args.quiet or not dist.is_main
    catalog = dist.main_first(lambda: evm.resolve_models(args.model, args.home, progress=not quiet, tasks=asked))
    tasks = asked or catalog.default_tasks
    cfg = build_config(args, tasks)
    cfg.device = device
    probe = catalog.load(catalog.names[0])
    task_objs = [get_task(t, probe.tokenizer, probe.image_size) for t in tasks]
    del probe
    data = evm.resolve_data(args.data, catalog, tasks)
    out = Path(args.out)
    settings = {**cfg.settings(), "models": catalog.names, "data": data.describe()}

    def open_store() -> ResultsStore:
        out.mkdir(parents=True, exist_ok=True)
        store = ResultsStore(out / "results.sqlite")
        store.bind(settings)
        store.set_meta("complete", False)
        clear_aggregates(out)
        return store

    if dist.active:  # rank 0 owns the file; the others hold an in-memory replica of it
        main_store = dist.raise_together(open_store, dist.is_main)  # a refused resume stops every rank
        image = dist.agree(lambda: main_store.snapshot() if main_store else None, main_only=True)
        store = main_store or ResultsStore.replica(out / "results.sqlite", image)
    else:
        store = open_store()

    def load_checked(name: str):
        variant = catalog.load(name)
        hashes = variant.info.get("sha256")
        check_same_weights(dist, name, hashes)
        store.bind_weights(name, hashes)
        return variant

    evaluator = Evaluator(cfg, store, load_checked, data.samples, progress=not quiet, dist=dist)
    evaluator.check_compatible(task_objs)
    t_eval, clock = time.perf_counter(), dist.clock()
    mark = compile_mark() if cfg.compile else None
    evaluator.run(catalog.names)
    spent = time.perf_counter() - t_eval
    phase_clocks = dist.all_gather(tuple(b - a for a, b in zip(clock, dist.clock())))  # per rank, this phase only
    if not dist.is_main:
        return 0
    run_info = {"command": "robust-ofa " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                "device": cfg.device,
                "precision": f"attacks {cfg.precision}" + (" compiled, predictions fp32 eager" if cfg.compile
                                                           else ", predictions fp32"),
                "seconds": round(time.time() - t0, 1), "evaluate_seconds": round(spent, 2),
                "data": data.describe(), "variants": catalog.variant_info(), **evm.package_info()}
    if cfg.compile:
        run_info["compile"] = _compile_report(mark)
    if dist.active:
        run_info["distributed"] = distributed_info(dist, phase_clocks, spent)
    if args.study_record:  # the study file's name, hash and content go into summary.json and the reports
        from robustbench_ofa.study.record import read_study_record

        run_info["study"] = read_study_record(args.study_record)
    store.set_meta("run", run_info)
    store.set_meta("complete", True)
    tables = write_aggregates(store, out, run_info)
    print(format_summary(tables))
    written = _reports(out, args.report)
    print(f"\nresults: {out.resolve()}" + "".join(f"\nreport:  {p}" for p in written))
    return 0


def _compile_report(mark: tuple[int, int, int] = (0, 0, 0)) -> dict:
    """Dynamo's graphs, recompile-limit hits and failed compilations during this evaluation (rank 0's under
    torchrun), with a warning when a compiled function fell back to eager: the run's numbers stand, but it
    was not compiled."""
    import torch

    from robustbench_ofa.evaluation.precision import compile_stats

    stats = compile_stats(mark)
    if stats["limit_reached_in"]:
        print(f"robust-ofa: warning: --compile: torch.compile reached a recompile limit in "
              f"{'; '.join(stats['limit_reached_in'])}, which then ran eagerly (numbers unaffected; "
              f"TORCH_LOGS=recompiles says what changed between calls)", file=sys.stderr)
    if stats["failed_in"]:
        print(f"robust-ofa: warning: --compile: torch {torch.__version__} failed to compile "
              f"{'; '.join(stats['failed_in'])}; it then ran eagerly (numbers unaffected)", file=sys.stderr)
    return stats


def _reports(out: Path, formats: str) -> list[Path]:
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    if not fmts:
        return []
    from robustbench_ofa.commands.report import write_reports

    try:
        return write_reports(out, formats=fmts)
    except RobustOFAError as exc:  # the run is complete and saved; a report problem must not hide that
        print(f"robust-ofa: warning: report not written: {exc}", file=sys.stderr)
        return []
