"""Rename pytest fixtures in the tests and fixtures that request them: ``python -m
tools.rename_fixture OLD=NEW [OLD=NEW ...] -- FILE [FILE ...]``.

Only functions named ``test*`` or decorated as fixtures are touched, and only those with a
parameter named OLD: the parameter and every use of that name in the function's body are
renamed; keyword argument names (``gateway=gateway`` becomes ``gateway=unthrottled_gateway``)
and attribute names are left alone. Files that define a fixture OLD of their own are skipped
for that name, since their tests mean the module's fixture.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in node.decorator_list)


def _spans(tree: ast.Module, old: str) -> list[tuple[int, int]]:
    """Line spans of the tests and fixtures that take a parameter ``old``."""
    spans = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not (node.name.startswith("test") or _is_fixture(node)):
            continue
        names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
        if old in names:
            spans.append((node.lineno, node.end_lineno or node.lineno))
    return spans


def _defines_fixture(tree: ast.Module, name: str) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name == name
        and _is_fixture(node)
        for node in tree.body
    )


def rename(source: str, mapping: dict[str, str]) -> str:
    """``source`` with the fixture parameters of ``mapping`` renamed (see the module doc)."""
    tree = ast.parse(source)
    spans = {old: _spans(tree, old) for old in mapping if not _defines_fixture(tree, old)}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    significant = [
        t for t in tokens if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    ]
    edits: list[tuple[int, int, str, str]] = []
    for i, token in enumerate(significant):
        if token.type != tokenize.NAME or token.string not in spans:
            continue
        row = token.start[0]
        if not any(start <= row <= end for start, end in spans[token.string]):
            continue
        before = significant[i - 1].string if i else ""
        after = significant[i + 1].string if i + 1 < len(significant) else ""
        if before == ".":
            continue
        if after == "=" and before in ("(", ","):
            continue  # a keyword argument's name
        edits.append((row, token.start[1], token.string, mapping[token.string]))
    lines = source.splitlines(keepends=True)
    for row, col, old, new in sorted(edits, reverse=True):
        line = lines[row - 1]
        assert line[col : col + len(old)] == old
        lines[row - 1] = line[:col] + new + line[col + len(old) :]
    return "".join(lines)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    mapping = dict(pair.split("=", 1) for pair in argv[:split])
    for name in argv[split + 1 :]:
        path = Path(name)
        before = path.read_text()
        after = rename(before, mapping)
        if after != before:
            path.write_text(after)
            print(f"renamed in {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
