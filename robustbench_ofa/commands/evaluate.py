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
    p = sub.add_parser("evaluate", help="attack OFA variants and write robustness results", description=__doc__)
    p.add_argument("--attack", required=True,
                   help="comma-separated attacks: image (fgsm, pgd, pgdl2, apgd-ce, apgd-dlr, apgd-t, autoattack, cw, "
                        "square), text (deepwordbug, pruthi, pwws, textfooler-glove, badchars) or joint (co-attack)")
    p.add_argument("--model", action="append", default=None,
                   help="zoo name or path (variant folder or HF-format folder); repeatable; default: the embedded zoo")
    p.add_argument("--task", default=None, help="comma-separated tasks (default: the tasks the models were tuned on)")
    p.add_argument("--data", default=None, help="data source, e.g. synthetic:downstream_test, manifest:PATH, tsv:PATH:FORMAT")
    p.add_argument("--eps", default="1/255,2/255,4/255", help="L-inf budgets (a sweep), in [0, 1] pixel units")
    p.add_argument("--eps-l2", default="0.5,1.0", help="L2 budgets for pgdl2 and cw")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--alpha", type=float, default=None, help="step size (default 2.5 * eps / steps)")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--queries", type=int, default=500, help="query budget of the Square attack")
    p.add_argument("--text-words", type=int, default=1, help="text attacks: words a perturbation may change")
    p.add_argument("--text-queries", type=int, default=300, help="text attacks: model queries per sample")
    p.add_argument("--text-batch", type=int, default=32, help="text attacks: candidate texts per model call")
    p.add_argument("--co-eps", default="2/255", help="co-attack: L-inf image budget of its PGD stage")
    p.add_argument("--co-text", default="pwws", help="co-attack: text attack of its first stage")
    p.add_argument("--n-samples", type=int, default=48, help="samples per task")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default ./{DEFAULT_OUT})")
    p.add_argument("--home", default=None, help="robust-ofa cache directory (default $ROBUST_OFA_HOME or ~/.cache/robust-ofa)")
    p.add_argument("--no-cascade", action="store_true", help="run every attack on every clean-correct sample")
    p.add_argument("--no-transfer", action="store_true", help="skip the transfer matrix")
    p.add_argument("--no-early-stop", action="store_true", help="keep attacking samples already fooled")
    p.add_argument("--report", default="html,pdf", help="report formats written at the end ('' for none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace, tasks: list[str]):
    from attacks import AttackParams
    from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list, parse_l2_list

    for name, value in (("--steps", args.steps), ("--restarts", args.restarts), ("--queries", args.queries),
                        ("--n-samples", args.n_samples), ("--batch-size", args.batch_size)):
        if value < 1:
            raise RobustOFAError(f"{name}: expected a positive integer, got {value}")
    if args.alpha is not None and not 0 < args.alpha <= 1:
        raise RobustOFAError(f"--alpha: expected a step size in (0, 1], got {args.alpha}")
    params = AttackParams(steps=args.steps, alpha=args.alpha, restarts=args.restarts, queries=args.queries,
                          early_stop=not args.no_early_stop, text_words=args.text_words,
                          text_queries=args.text_queries, text_batch=args.text_batch, co_eps=args.co_eps.strip(),
                          co_text=args.co_text.strip())
    cfg = EvalConfig(attacks=[a.strip() for a in args.attack.split(",") if a.strip()], tasks=tasks,
                     eps=parse_eps_list(args.eps), eps_l2=parse_l2_list(args.eps_l2), params=params,
                     n_samples=args.n_samples, batch_size=args.batch_size, seed=args.seed, device=args.device,
                     cascade=not args.no_cascade, transfer=not args.no_transfer)
    cfg.validate()
    if cfg.has_text_attacks():  # offline resources are checked before any model is built
        from attacks.text.resources import require

        require(sorted(cfg.text_needs()))
    return cfg


def run(args: argparse.Namespace) -> int:
    from robustbench_ofa.evaluation import models as evm
    from robustbench_ofa.evaluation.outputs import clear_aggregates, format_summary, write_aggregates
    from robustbench_ofa.evaluation.runner import Evaluator
    from robustbench_ofa.evaluation.store import ResultsStore
    from robustbench_ofa.tasks import get_task

    t0 = time.time()
    # Cheap checks first: attack names and budgets are refused before any model is built or loaded.
    build_config(args, ["ve"])
    catalog = evm.resolve_models(args.model, args.home, progress=not args.quiet)
    tasks = [t.strip() for t in args.task.split(",")] if args.task else catalog.default_tasks
    cfg = build_config(args, tasks)
    probe = catalog.load(catalog.names[0])
    task_objs = [get_task(t, probe.tokenizer, probe.image_size) for t in tasks]
    del probe
    data = evm.resolve_data(args.data, catalog, tasks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out / "results.sqlite")
    settings = {**cfg.settings(), "models": catalog.names, "data": data.describe()}
    store.bind(settings)
    store.set_meta("complete", False)
    clear_aggregates(out)

    def load_checked(name: str):
        variant = catalog.load(name)
        store.bind_weights(name, variant.info.get("sha256"))
        return variant

    evaluator = Evaluator(cfg, store, load_checked, data.samples, progress=not args.quiet)
    evaluator.check_compatible(task_objs)
    evaluator.run(catalog.names)
    run_info = {"command": "robust-ofa " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                "device": cfg.device, "seconds": round(time.time() - t0, 1), "data": data.describe(),
                "variants": catalog.variant_info(), **evm.package_info()}
    store.set_meta("run", run_info)
    store.set_meta("complete", True)
    tables = write_aggregates(store, out, run_info)
    print(format_summary(tables))
    written = _reports(out, args.report)
    print(f"\nresults: {out.resolve()}" + "".join(f"\nreport:  {p}" for p in written))
    return 0


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
