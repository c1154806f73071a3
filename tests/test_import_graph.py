"""The import graph: module pairs that once imported each other (one side hidden in a function) stay apart.

Every ``import`` counts, at module level or inside a function, except those under ``if TYPE_CHECKING:``
(annotations only, never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robustbench_ofa", "attacks", "reports")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in out if m in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {_module_name(p) for p in files}
    return {_module_name(p): _imports(ast.parse(p.read_text()), _module_name(p), p.name == "__init__.py", known)
            for p in files}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """An import chain from ``start`` to ``goal``, or None."""
    seen, stack = {start}, [[start]]
    while stack:
        chain = stack.pop()
        for nxt in sorted(graph.get(chain[-1], ())):
            if nxt == goal:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*chain, nxt])
    return None


@pytest.mark.parametrize("low, high", [
    ("reports.plots", "reports.build"),                               # Report/Figure live in reports.model
    ("reports.model", "reports.build"),
    ("robustbench_ofa.models.modeling", "robustbench_ofa.models.loading"),  # loading attaches from_pretrained
])
def test_no_import_back_up(graph, low, high):
    assert low in graph and high in graph
    assert _reaches(graph, high, low), f"{high} no longer uses {low}: update this test"
    chain = _reaches(graph, low, high)
    assert chain is None, "import cycle: " + " -> ".join(chain)


def test_from_pretrained_is_attached_on_any_import_path():
    import subprocess
    import sys

    code = ("from robustbench_ofa.models.modeling import OFAModel; from transformers import PreTrainedModel; "
            "assert OFAModel.from_pretrained.__func__ is not PreTrainedModel.from_pretrained.__func__; "
            "assert OFAModel.save_pretrained is not PreTrainedModel.save_pretrained")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
