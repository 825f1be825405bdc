"""The house rules of the source tree: small modules, short functions, one home per concept."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 80


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _code_lines(lines: list[str], node: ast.AST) -> int:
    """Non-blank, non-comment lines of ``node``, its docstring left out."""
    doc: set[int] = set()
    body = getattr(node, "body", [])
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        doc = set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1 for i in range(node.lineno, node.end_lineno + 1)
        if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def test_source_tree_is_found():
    assert len(_sources()) > 20


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_small_and_its_functions_short(path):
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines"
    long = [
        f"{node.name} (line {node.lineno}): {_code_lines(lines, node)} lines of code"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _code_lines(lines, node) > MAX_FUNCTION_CODE_LINES
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_CODE_LINES} lines: {long}"


def test_class_names_have_one_home():
    """``("HEM", "ALL")`` is spelled out only in allnet_core.classes."""
    spelled = [
        str(p.relative_to(SRC)) for p in _sources()
        if p.name != "classes.py" and any(
            isinstance(n, ast.Tuple | ast.List)
            and [getattr(e, "value", None) for e in n.elts] == ["HEM", "ALL"]
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))
    ]
    assert spelled == []
