"""CLI subcommands, one module each; each module exposes ``register(subparsers)``."""

#: Subcommand modules in help order.
MODULES: list[str] = [
    "robustbench_ofa.commands.train",
    "robustbench_ofa.commands.zoo",
    "robustbench_ofa.commands.evaluate",
    "robustbench_ofa.commands.report",
    "robustbench_ofa.commands.regress",
    "robustbench_ofa.commands.study",
    "robustbench_ofa.commands.setup_text",
]
