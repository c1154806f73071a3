"""``robust-ofa zoo list|build|show|register|unregister``: the model zoo on the command line."""

from __future__ import annotations

import argparse
import json

from robustbench_ofa.errors import RobustOFAError


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None,
                   help="cache directory (default: $ROBUST_OFA_HOME or ~/.cache/robust-ofa)")


def register(subparsers: argparse._SubParsersAction) -> None:
    zoo = subparsers.add_parser("zoo", help="list, build, inspect and register zoo models")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)

    p = sub.add_parser("list", help="list the embedded and registered models with their clean metrics")
    _add_home(p)
    p.add_argument("--json", action="store_true", help="print the cards as JSON instead of a table")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("build", help="build the embedded zoo now (otherwise built on first use)")
    _add_home(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--with", dest="with_zoos", action="append", default=[], choices=["caption", "adversarial"],
                   help="also build on-demand models (caption: the embedded-caption-* zoo, otherwise built the "
                        "first time --task caption is evaluated; adversarial: the PGD-AT twins "
                        "embedded-finetune-at and embedded-prompt-16-at, otherwise built when named); repeatable")
    p.set_defaults(handler=_cmd_build)

    p = sub.add_parser("show", help="print one model's card (JSON)")
    _add_home(p)
    p.add_argument("name", help="zoo name, registered name or folder")
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser("register", help="register your own checkpoint or tuned-variant folder by name")
    _add_home(p)
    p.add_argument("path", help="folder with config.json + weights (OFA-Sys format) or a variant folder")
    p.add_argument("--name", required=True, help="name to register it under")
    p.add_argument("--image-size", type=int, default=None, help="input resolution the model expects")
    p.add_argument("--task", action="append", default=None, help="task(s) it was tuned for (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing registration of the name")
    p.set_defaults(handler=_cmd_register)

    p = sub.add_parser("unregister", help="forget a registered model (its files are not touched)")
    _add_home(p)
    p.add_argument("name")
    p.set_defaults(handler=_cmd_unregister)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(cards) -> str:
    """A fixed-width table: one row per model, headline clean metric per task in percent."""
    from robustbench_ofa.training.loop import MAIN_METRIC

    tasks = [t for t in MAIN_METRIC if any(t in c.clean or t in c.tasks for c in cards)]
    header = ["name", "source", "method", "trainable", *[f"{t} {MAIN_METRIC[t]}" for t in tasks], "status"]
    rows = []
    for c in cards:
        metrics = c.main_metrics()
        rows.append([c.name, c.source, c.method, f"{c.trainable_params:,}" if c.trainable_params else "-",
                     *[_pct(metrics.get(t)) for t in tasks], c.status])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    from robustbench_ofa.zoo import list_models, resolve_home

    cards = list_models(args.home)
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2, sort_keys=True))
        return 0
    print(format_table(cards))
    if any(c.status == "not built" for c in cards):
        print(f"\n(embedded models are built on first use, or now with `robust-ofa zoo build` and, for the "
              f"caption zoo, `robust-ofa zoo build --with caption`; home: {resolve_home(args.home)})")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from robustbench_ofa.zoo import ensure_embedded, list_models
    from robustbench_ofa.zoo.build import ensure_on_demand
    from robustbench_ofa.zoo.recipe import caption_recipe, default_recipe

    recipes = [default_recipe()] + ([caption_recipe()] if "caption" in args.with_zoos else [])
    names = {n for r in recipes for n in r.names}
    for recipe in recipes:
        root = ensure_embedded(args.home, progress=not args.quiet, recipe=recipe)
        if "adversarial" in args.with_zoos:
            for name in recipe.on_demand_names:
                ensure_on_demand(root, recipe, name[len(recipe.prefix) + 1:], progress=not args.quiet)
                names.add(name)
        print(f"{recipe.prefix} zoo: {root}")
    print(format_table([c for c in list_models(args.home) if c.name in names]))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robustbench_ofa.zoo import list_models
    from robustbench_ofa.zoo.registry import card_for_folder

    for card in list_models(args.home):
        if card.name == args.name:
            print(card.to_json(), end="")
            return 0
    path = Path(args.name).expanduser()
    if path.is_dir():
        print(card_for_folder(path, path.name).to_json(), end="")
        return 0
    names = ", ".join(c.name for c in list_models(args.home))
    raise RobustOFAError(f"unknown model '{args.name}': expected one of {names} or a model folder")


def _cmd_register(args: argparse.Namespace) -> int:
    from robustbench_ofa.zoo import register as register_model

    card = register_model(args.path, args.name, args.home, image_size=args.image_size, tasks=args.task,
                          overwrite=args.overwrite)
    print(f"registered {card.name} -> {card.path} ({card.method})")
    return 0


def _cmd_unregister(args: argparse.Namespace) -> int:
    from robustbench_ofa.zoo.registry import unregister

    unregister(args.name, args.home)
    print(f"unregistered {args.name}")
    return 0
