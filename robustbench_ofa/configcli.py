"""Command-line options generated from config dataclasses, so defaults, help and checks are written once.

A config field becomes an option when it is declared with :func:`opt` (PEFT's and transformers'
``field(metadata={"help": ...})`` idea): the dataclass default is the option's default, the help text
is the option's help, and ``check`` is the validation both the parser and programmatic callers run
(``validate``). A boolean that defaults to True becomes ``--no-NAME``. A field whose value is parsed
from text (budget lists such as ``2/255,4/255``) names its parser and its text default.

Why here and not in each command: the same dataclass is built from the command line, from tests and
from study files; a second copy of its defaults or checks in a command module drifts (it did).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from robustbench_ofa.errors import RobustOFAError

#: ``check(value) -> None`` when valid, else what was expected (the error reads "FLAG: expected ..., got V").
Check = Callable[[Any], "str | None"]


def positive(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 1 else "a positive integer"


def non_negative(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and value >= 0 else "a number >= 0"


def step_size(value: Any) -> str | None:
    return None if value is None or 0 < value <= 1 else "a step size in (0, 1]"


def positive_number(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and value > 0 else "a positive number"


def fraction(value: Any) -> str | None:
    """In [0, 1) (a share that cannot be all of it: warm-up ratio, label smoothing)."""
    return None if isinstance(value, (int, float)) and 0 <= value < 1 else "a number in [0, 1)"


def unit_interval(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and 0 <= value <= 1 else "a number in [0, 1]"


def count(value: Any) -> str | None:
    """An int >= 0 (intervals where 0 means never)."""
    return None if isinstance(value, int) and value >= 0 else "an int >= 0"


def optional(check: Check) -> Check:
    """``check`` for a value that may also be None (None means "not set")."""
    return lambda value: None if value is None else check(value)


def one_of(names: Iterable[str]) -> Check:
    names = tuple(names)
    return lambda value: None if value in names else f"one of {', '.join(names)}"


def opt(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
        default_factory: Callable[[], Any] | Any = dataclasses.MISSING, type: Callable | None = None,
        parse: Callable[[str], Any] | None = None, text: str | None = None, check: Check | None = None,
        choices: Callable[[], Iterable[str]] | None = None, key: str | None = None,
        when: Callable[[Any], bool] | None = None, aliases: Sequence[str] = (), cli: bool = True) -> Any:
    """A dataclass field that is also a command-line option.

    ``flag``: the option (default ``--field-name``; ``--no-field-name`` for a True boolean). ``type``: the
    argparse type when the default does not tell (``None`` defaults). ``parse`` + ``text``: the value is
    given as text (``text`` is its default) and ``parse`` turns it into the field's value. ``check``:
    validation. ``choices``: a callable listing the valid names (from a registry), shown in the help.
    ``key``: the field's name in stored settings when it differs. ``when(config)``: check only then.
    ``aliases``: further option strings. ``cli=False``: checked like the others but no option.
    """
    metadata = {"help": help, "flag": flag, "type": type, "parse": parse, "text": text, "check": check,
                "choices": choices, "key": key, "when": when, "aliases": tuple(aliases), "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def checked_fields(cls: type) -> list[dataclasses.Field]:
    """Fields declared with :func:`opt` (options and checked-only fields)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in checked_fields(cls) if f.metadata.get("cli", True)]


def flag_of(f: dataclasses.Field) -> str:
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True else f"--{name}"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  dest_prefix: str = "", defaults: dict[str, Any] | None = None,
                  skip: Sequence[str] = ()) -> None:
    """Add one option per :func:`opt` field of ``cls`` (``defaults`` overrides a field's default)."""
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        m, flag = f.metadata, flag_of(f)
        dest = dest_prefix + f.name
        metavar = flag.lstrip("-").replace("-", "_").upper()
        default = (defaults or {}).get(f.name, _default(f))
        text = m["help"]
        if m.get("choices"):
            text += " (choices: " + ", ".join(m["choices"]()) + ")"
        flags = (flag, *m.get("aliases", ()))
        if isinstance(default, bool):
            action = "store_false" if flag.startswith("--no-") else "store_true"
            parser.add_argument(*flags, dest=dest, action=action, default=default, help=text)
            continue
        if m.get("parse"):
            if default is dataclasses.MISSING:
                parser.add_argument(*flags, dest=dest, required=True, metavar=metavar, help=text)
                continue
            shown = m.get("text") if f.name not in (defaults or {}) else default
            parser.add_argument(*flags, dest=dest, default=shown, metavar=metavar, help=f"{text} (default {shown})")
            continue
        kind = m.get("type") or (type(default) if default not in (None, dataclasses.MISSING) else str)
        required = default is dataclasses.MISSING
        kwargs: dict[str, Any] = {"required": True} if required else {"default": default}
        shown = "" if required or default is None else f" (default {default})"
        parser.add_argument(*flags, dest=dest, type=kind, metavar=metavar, help=text + shown, **kwargs)


def values_from_args(cls: type, args: argparse.Namespace, dest_prefix: str = "",
                     skip: Sequence[str] = ()) -> dict[str, Any]:
    """The ``cls`` field values the parser collected (text fields parsed; a parse error names the flag)."""
    out = {}
    for f in cli_fields(cls):
        if f.name in skip or not hasattr(args, dest_prefix + f.name):
            continue
        value = getattr(args, dest_prefix + f.name)
        parse = f.metadata.get("parse")
        if parse is not None and isinstance(value, str):
            value = parse(value)
        elif isinstance(value, str):
            value = value.strip()
        out[f.name] = value
    return out


def validate(obj: Any) -> None:
    """Run every field's ``check`` on a config instance; the first failure is one line naming its flag."""
    check_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, context=obj)


def check_values(cls: type, values: dict[str, Any], *, context: Any = None,
                 label: Callable[[dataclasses.Field], str] | None = None, show: Callable[[Any], str] = str) -> None:
    """Check the given field ``values`` of ``cls`` (before or after building it). Errors read
    ``LABEL: expected ..., got VALUE`` with ``label(field)`` (default: the option's flag)."""
    for f in checked_fields(cls):
        if f.name not in values:
            continue
        check, when = f.metadata.get("check"), f.metadata.get("when")
        if check is None or (when is not None and (context is None or not when(context))):
            continue
        expected = check(values[f.name])
        if expected:
            where = label(f) if label else flag_of(f)
            raise RobustOFAError(f"{where}: expected {expected}, got {show(values[f.name])}")


def help_of(cls: type, name: str) -> str:
    """The help text of field ``name`` (for documentation generated from the same source)."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)
