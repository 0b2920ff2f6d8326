"""The layers hold in the source: no import of a project app hidden in a function body or behind
``except ImportError`` unless ARCHITECTURE.md says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {
    "arena",
    "core",
    "exchange",
    "risk",
    "trading",
    "signals",
    "monitoring",
    "dashboard",
    "paper",
}
# (module file, function) → why the import cannot sit at the top. Kept in step with
# ARCHITECTURE.md, "Imports inside functions".
DOCUMENTED_FUNCTION_IMPORTS = {
    ("arena/celery.py", "_reconcile_on_start"): "the Celery app loads before Django is set up",
    ("dashboard/apps.py", "ready"): "AppConfig.ready: models are ready only then",
    ("monitoring/apps.py", "ready"): "AppConfig.ready: registers the notification port",
    ("signals/apps.py", "ready"): "AppConfig.ready: connects the schedule signals",
    ("signals/apps.py", "_schedules_changed"): "signals/apps.py loads before the models",
    ("monitoring/services.py", "_delivery_enqueue"): "tasks import services (the Celery task)",
    ("paper/server.py", "_control"): "paper's control API is loaded only when served",
}


def _source_files() -> list[Path]:
    files = []
    for package in sorted(PROJECT_PACKAGES):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                files.append(path)
    return files


def _project_module(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in PROJECT_PACKAGES


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        return [node.module or ""]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def _function_body_imports(path: Path) -> list[tuple[str, str, int]]:
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if function is not None:
                for module in _imported_modules(child):
                    if _project_module(module):
                        found.append((function, module, child.lineno))
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            visit(child, inner)

    visit(ast.parse(path.read_text()), None)
    return found


def test_project_imports_when_inside_a_function_then_documented_why() -> None:
    undocumented = []
    for path in _source_files():
        relative = path.relative_to(ROOT).as_posix()
        for function, module, line in _function_body_imports(path):
            if (relative, function) not in DOCUMENTED_FUNCTION_IMPORTS:
                undocumented.append(f"{relative}:{line} {function}() imports {module}")

    assert undocumented == []


def test_project_imports_when_guarded_by_except_import_error_then_none() -> None:
    guarded = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            catches_import_error = any(
                isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
                for handler in node.handlers
            )
            imports = [m for stmt in node.body for m in _imported_modules(stmt)]
            if catches_import_error and any(_project_module(m) for m in imports):
                guarded.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")

    assert guarded == []


def test_documented_function_imports_when_listed_then_still_present() -> None:
    """A documented exception that no longer exists is removed from the list (and the doc)."""
    present = {
        (path.relative_to(ROOT).as_posix(), function)
        for path in _source_files()
        for function, _, _ in _function_body_imports(path)
    }

    assert set(DOCUMENTED_FUNCTION_IMPORTS) - present == set()
