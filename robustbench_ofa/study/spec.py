"""Reading a study file: TOML -> variables and overrides applied -> a checked ``StudySpec``.

A study file is a thin, declarative layer over the two commands that do the work: each variant table is
the option list of one ``robust-ofa train tune`` run and the ``[evaluate]`` table the option list of one
``robust-ofa evaluate`` run (keys are the commands' long options without ``--``). Why not a schema of its
own: the commands already own every default, check and help text (generated from the config
dataclasses); a second schema would drift from them. So ``study plan`` prints the exact commands a study
runs, and anything the commands accept, a study accepts.

Layout::

    [study]     name (required), description, out (default runs/<name>), home
    [vars.X]    default (optional: without one the variable must be set), help
    [bases.B]   model = zoo name, registered name or checkpoint folder
    [variants.V]  base = B, method, task, data, ... any `train tune` option; hparams = {key = value}
    [evaluate]  model = [V or B or zoo names] (default: every variant), ... any `evaluate` option

``${X}`` in a string is replaced by variable X (a string that is exactly ``${X}`` takes X's value with
its type). ``--set X=VALUE`` sets a variable; ``--set SECTION.KEY=VALUE`` (a dotted path such as
``evaluate.n-samples=8`` or ``variants.finetune.epochs=1``) overrides one field of the file.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SECTIONS = ("study", "vars", "bases", "variants", "evaluate")
STUDY_KEYS = ("name", "description", "out", "home")
VAR_KEYS = ("default", "help")
BASE_KEYS = ("model",)
#: Variant keys that are not ``train tune`` options: ``base`` names a [bases] entry, ``hparams`` becomes
#: ``--hparam KEY=VALUE`` options.
VARIANT_KEYS = ("base", "hparams")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class StudySpec:
    """A study file with its variables and overrides applied (values still as TOML gave them)."""

    path: Path
    text: str
    name: str
    description: str
    out: str
    home: str | None
    vars: dict[str, Any]
    overrides: dict[str, Any]
    bases: dict[str, str]
    variants: dict[str, dict[str, Any]]
    evaluate: dict[str, Any]
    var_help: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def record(self) -> dict[str, Any]:
        """What every card, summary and report made by this study stores about it."""
        return {"name": self.name, "file": str(self.path.resolve()), "sha256": self.sha256, "content": self.text,
                "vars": dict(self.vars), "overrides": dict(self.overrides)}


def _err(path: Path, where: str, message: str) -> RobustOFAError:
    return RobustOFAError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def parse_sets(items: Sequence[str], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items -> (variables, dotted overrides). Values are read as TOML literals when they are one
    (``8``, ``1e-4``, ``true``, ``"x"``, ``[1, 2]``), else kept as plain strings (paths)."""
    variables: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RobustOFAError(f"--set '{item}': expected NAME=VALUE or SECTION.KEY=VALUE")
        value = _literal(text)
        target = overrides if "." in key else variables
        if key in target:
            raise RobustOFAError(f"--set '{item}': '{key}' is set twice")
        target[key] = value
    return variables, overrides


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_study(path: str | Path, sets: Sequence[str] = ()) -> StudySpec:
    """Read, substitute and structurally check a study file (every name check happens in ``plan``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RobustOFAError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RobustOFAError(f"{path}: cannot read the study file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _err(path, "", f"not valid TOML ({exc})") from None
    variables, overrides = parse_sets(sets, path)
    _unknown(path, "", data, SECTIONS)
    for dotted, value in overrides.items():
        _override(path, data, dotted, value)
    # structure first, so a misspelt key is named even where a variable is also missing
    _unknown(path, "study", _table(path, "study", data.get("study")), STUDY_KEYS)
    for key, table in _table(path, "bases", data.get("bases", {})).items():
        _unknown(path, f"bases.{key}", _table(path, f"bases.{key}", table), BASE_KEYS)
    declared = _table(path, "vars", data.get("vars", {}))
    values, helps = {}, {}
    for name, decl in declared.items():
        if not isinstance(decl, dict):  # shorthand: NAME = default
            decl = {"default": decl}
        _unknown(path, f"vars.{name}", decl, VAR_KEYS)
        helps[name] = str(decl.get("help", ""))
        if "default" in decl:
            values[name] = decl["default"]
    unknown = sorted(set(variables) - set(declared))
    if unknown:
        raise RobustOFAError(f"--set {unknown[0]}: {path} declares no variable '{unknown[0]}' (declared: "
                             f"{', '.join(sorted(declared)) or 'none'}; a field is set as SECTION.KEY=VALUE)")
    values.update(variables)
    body = {k: v for k, v in data.items() if k != "vars"}
    body = _substitute(path, "", body, values, helps)

    study = body["study"]
    name = study.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(path, "study.name", "expected a name of letters, digits, '.', '_' or '-'")
    bases: dict[str, str] = {}
    for key, table in _table(path, "bases", body.get("bases", {})).items():
        if not isinstance(table.get("model"), str) or not table["model"]:
            raise _err(path, f"bases.{key}.model", "expected a zoo name, registered name or checkpoint folder")
        bases[key] = table["model"]
    variants = {}
    for key, table in _table(path, "variants", body.get("variants", {})).items():
        if not _NAME.match(key):
            raise _err(path, f"variants.{key}", "a variant name is a folder name: letters, digits, '.', '_', '-'")
        variants[key] = _normalise(_table(path, f"variants.{key}", table))
    evaluate = _normalise(_table(path, "evaluate", body.get("evaluate", {})))
    return StudySpec(path=path, text=text, name=name, description=str(study.get("description", "")),
                     out=str(study.get("out") or f"runs/{name}"), home=study.get("home"), vars=values,
                     overrides=overrides, bases=bases, variants=variants, evaluate=evaluate, var_help=helps)


def _table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        raise _err(path, f"[{where}]", "section is missing")
    if not isinstance(value, dict):
        raise _err(path, where, "expected a table")
    return value


def _unknown(path: Path, where: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise _err(path, f"{where + '.' if where else ''}{key}",
                       f"unknown key (expected one of {', '.join(allowed)})")


def _normalise(table: dict[str, Any]) -> dict[str, Any]:
    """Option keys as the command line spells them: ``image_size`` and ``image-size`` are the same key."""
    return {k if k in VARIANT_KEYS else k.replace("_", "-"): v for k, v in table.items()}


def _override(path: Path, data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply ``--set a.b.c=value``: a, a.b must exist (a typo is refused); the last key may be new."""
    keys = dotted.split(".")
    if keys[0] not in SECTIONS or keys[0] == "vars":
        raise RobustOFAError(f"--set {dotted}: expected a field of [{'], ['.join(s for s in SECTIONS if s != 'vars')}]"
                             " (a variable is set without a dot)")
    node = data
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node.get(key), dict):
            raise RobustOFAError(f"--set {dotted}: {path} has no table [{'.'.join(keys[:i + 1])}]")
        node = node[key]
    node[keys[-1]] = value


def _substitute(path: Path, where: str, value: Any, values: Mapping[str, Any], helps: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(path, f"{where}.{k}" if where else k, v, values, helps) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(path, f"{where}[{i}]", v, values, helps) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(name: str) -> Any:
        if name not in values:
            hint = f" ({helps[name]})" if helps.get(name) else ""
            raise _err(path, where, f"variable '{name}' is not set{hint}: pass --set {name}=VALUE")
        return values[name]

    whole = _VAR.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    return _VAR.sub(lambda m: str(lookup(m.group(1))), value)
