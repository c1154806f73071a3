"""A study's steps: one ``train tune`` per variant, then one ``evaluate`` (which writes the reports).

Every step is an argument list for the real command line, checked here with the commands' own parsers
and checks before any step runs: an unknown option, method, task or attack, a missing data file, a bad
answer file or an out-of-range value is one line naming the study file and the table it came from.
Running a step is parsing that list and calling the command's handler, so a study computes exactly what
the printed commands compute.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.study.record import RECORD_FILE
from robustbench_ofa.study.spec import StudySpec

VARIANTS_DIR = "variants"
EVALUATE_DIR = "evaluate"
#: Options a study sets itself (where each step writes, the study record) or that would defeat resuming.
RESERVED = ("out", "home", "study-record", "no-resume", "quiet", "help")


@dataclass
class Step:
    kind: str  # "tune" or "evaluate"
    name: str
    argv: list[str]
    out: Path

    def done(self) -> bool:
        """A tuned variant is done when its card exists; an evaluation when its summary was written (the
        commands write both last, atomically)."""
        marker = "card.json" if self.kind == "tune" else "summary.json"
        return (self.out / marker).is_file()

    def split(self, world: int):
        """How a tune step's global batch runs on ``world`` processes (``training.parallel.StepSplit``;
        a split that does not divide the batch is one line naming the variant)."""
        from robustbench_ofa.training.parallel import StepSplit

        args = _parse(self.argv)
        try:
            return StepSplit(int(args.batch_size), world, args.micro_batch_size)
        except RobustOFAError as exc:
            raise RobustOFAError(f"variant {self.name}: {exc}") from None

    def device(self) -> str:
        return str(getattr(_parse(self.argv), "device", "cpu"))

    def command(self) -> str:
        shown = list(self.argv)
        if "--study-record" in shown:  # an internal detail of `study run`, not part of the command to copy
            i = shown.index("--study-record")
            del shown[i:i + 2]
        return "robust-ofa " + " ".join(shlex.quote(a) for a in shown)


def _subparser(*names: str) -> argparse.ArgumentParser:
    from robustbench_ofa.cli import build_parser

    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s[2:]: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def _to_argv(spec: StudySpec, where: str, table: dict[str, Any], options: dict[str, argparse.Action]) -> list[str]:
    """TOML values -> options: true/false for switches, lists repeated (repeatable options) or comma-joined."""
    argv: list[str] = []
    for key, value in table.items():
        if key not in options and isinstance(value, bool) and options.get("no-" + key) is not None:
            argv += [] if value else ["--no-" + key]  # `transfer = false` is the command's --no-transfer
            continue
        if key in RESERVED or key not in options:
            why = "set by the study itself" if key in RESERVED else "not an option of this command"
            raise RobustOFAError(f"{spec.path}: {where}.{key}: {why} (see `robust-ofa {_COMMAND[where.split('.')[0]]} "
                                 "--help`)")
        action, flag = options[key], "--" + key
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise RobustOFAError(f"{spec.path}: {where}.{key}: expected true or false")
            argv += [flag] if value else []
        elif isinstance(value, list):
            if isinstance(action, argparse._AppendAction):
                for v in value:
                    argv += [flag, _text(v)]
            else:
                argv += [flag, ",".join(_text(v) for v in value)]
        elif isinstance(value, dict):
            raise RobustOFAError(f"{spec.path}: {where}.{key}: expected a value, not a table")
        else:
            argv += [flag, _text(value)]
    return argv


_COMMAND = {"variants": "train tune", "evaluate": "evaluate"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@contextlib.contextmanager
def _parse_errors(spec: StudySpec, where: str) -> Iterator[None]:
    """argparse's usage errors and the commands' checks as one line naming the study file and table."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except SystemExit:
        message = buffer.getvalue().strip().splitlines()[-1:] or ["invalid options"]
        raise RobustOFAError(f"{spec.path}: [{where}]: {message[0].split(': error: ')[-1]}") from None
    except RobustOFAError as exc:
        raise RobustOFAError(f"{spec.path}: [{where}]: {exc}") from None


def build_steps(spec: StudySpec, out: str | Path | None = None) -> list[Step]:
    """Every step of the study, checked (see module doc); nothing is trained, loaded or attacked."""
    root = Path(out or spec.out)
    record = str(root / RECORD_FILE)
    home = ["--home", str(spec.home)] if spec.home else []
    for key, model in spec.bases.items():
        with _parse_errors(spec, f"bases.{key}"):
            _check_model(model, spec.home)
    steps = []
    tune_options = _options(_subparser("train", "tune"))
    for name, table in spec.variants.items():
        where = f"variants.{name}"
        table = dict(table)
        base = table.pop("base", None)
        if base not in spec.bases:
            raise RobustOFAError(f"{spec.path}: {where}.base: expected one of the [bases] tables "
                                 f"({', '.join(spec.bases) or 'none declared'}), got {base!r}")
        hparams = table.pop("hparams", {})
        if not isinstance(hparams, dict):
            raise RobustOFAError(f"{spec.path}: {where}.hparams: expected a table of hyper-parameters")
        argv = ["train", "tune", "--base", spec.bases[base], *_to_argv(spec, where, table, tune_options)]
        for key, value in hparams.items():
            argv += ["--hparam", f"{key}={_text(value)}"]
        target = root / VARIANTS_DIR / name
        argv += ["--out", str(target), *home, "--study-record", record]
        with _parse_errors(spec, where):
            _check_tune(argv)
        steps.append(Step("tune", name, argv, target))
    table = dict(spec.evaluate)
    models = table.pop("model", list(spec.variants))
    models = [models] if isinstance(models, str) else list(models)
    argv = ["evaluate"]
    for m in models:
        if m in spec.variants:
            argv += ["--model", str(root / VARIANTS_DIR / m)]
        else:
            with _parse_errors(spec, "evaluate.model"):
                _check_model(spec.bases.get(m, m), spec.home)
            argv += ["--model", spec.bases.get(m, m)]
    argv += _to_argv(spec, "evaluate", table, _options(_subparser("evaluate")))
    argv += ["--out", str(root / EVALUATE_DIR), *home, "--study-record", record]
    with _parse_errors(spec, "evaluate"):
        _check_evaluate(argv)
    steps.append(Step("evaluate", "evaluate", argv, root / EVALUATE_DIR))
    return steps


def _parse(argv: list[str]) -> argparse.Namespace:
    from robustbench_ofa.cli import build_parser

    return build_parser().parse_args(argv)


def _check_model(model: str, home: str | None) -> None:
    """A zoo or registered name, or an existing folder (loaded only when its step runs)."""
    from robustbench_ofa.zoo.recipe import recipe_for_name
    from robustbench_ofa.zoo.registry import _read_registry

    if recipe_for_name(model) is not None or model in _read_registry(home):
        return
    if not Path(model).expanduser().exists():
        raise RobustOFAError(f"model '{model}': not a zoo or registered name, and no such folder")


def _check_data(specs: list[str], tasks: list[str], option: str) -> None:
    from robustbench_ofa.data.sources import parse_task_sources

    for task, source in parse_task_sources(specs, tasks).items():
        _check_source(source, f"{option} {source} ({task} data)")


def _check_source(source, what: str) -> None:
    if source.kind != "synthetic" and not Path(source.location).expanduser().exists():
        raise RobustOFAError(f"{what}: {source.location} does not exist")


def _check_tune(argv: list[str]) -> None:
    from robustbench_ofa.commands import train as cmd
    from robustbench_ofa.training.ablation import expand_grid, parse_grid
    from robustbench_ofa.tuning import METHODS

    args = _parse(argv)
    method = METHODS.get(args.method)
    tasks = cmd._tasks_arg(args.task)
    if len(expand_grid(parse_grid(args.method, cmd._grid_specs(args)))) != 1:
        raise RobustOFAError("a study variant is one training run: give one value per hyper-parameter "
                             "(declare one variant per value)")
    cmd._check_options(args)  # with the world size of the torchrun job the study runs in, if any
    cmd._train_config(args, method.default_lr, 300)
    _check_data(args.data or ["synthetic:downstream_train"], tasks, "--data")
    if str(args.eval_data).lower() != "none":
        _check_data([args.eval_data], tasks, "--eval-data")
    if args.answers:
        from robustbench_ofa.tasks.answers import load_answers

        load_answers(args.answers)


def _check_evaluate(argv: list[str]) -> None:
    from robustbench_ofa.commands.evaluate import build_config, requested_tasks

    args = _parse(argv)
    build_config(args, requested_tasks(args))
    if args.data is not None:
        from robustbench_ofa.data.sources import parse_source

        _check_source(parse_source(args.data), f"--data {args.data}")


def run_step(step: Step) -> None:
    args = _parse(step.argv)
    code = int(args.handler(args) or 0)
    if code:
        raise RobustOFAError(f"study step '{step.name}' ({step.command()}) exited with status {code}")
