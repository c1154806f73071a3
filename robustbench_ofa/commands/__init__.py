"""CLI subcommands, one module each; each module exposes ``register(subparsers)``."""

#: Subcommand modules in help order.
MODULES: list[str] = []
