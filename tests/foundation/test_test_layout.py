"""The tests' own layout: shared helpers come from ``tests.support``, never from a conftest or
another test module, and a fixture name means one thing wherever a conftest or plugin defines it.

A conftest imported as a module runs a second time under another name (its fixtures are then
registered twice), and a test module imported by another drags its tests and fixtures along.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _module_of(path: Path, root: Path) -> str:
    """The dotted name of ``path`` as imported from the directory above ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (in function bodies too), relative imports resolved; for
    ``from package import name`` both the package and ``package.name``."""
    package = _module_of(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def forbidden_imports(root: Path) -> list[str]:
    """``file:line module`` for every import of a conftest or a test module under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module in _imported_modules(path, root):
            last = module.rpartition(".")[2]
            if module.split(".")[0] == root.name and (
                last == "conftest" or last.startswith("test_")
            ):
                found.append(f"{path.relative_to(root.parent)}:{line} {module}")
    return found


def _fixture_definitions(path: Path) -> dict[str, str]:
    """The fixtures defined at the top of ``path``: {name: source}."""
    source = path.read_text()
    fixtures = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            "fixture" in ast.unparse(d) for d in node.decorator_list
        ):
            body = ast.get_source_segment(source, node) or ""
            fixtures[node.name] = body
    return fixtures


def fixtures_with_two_meanings(root: Path) -> list[str]:
    """Fixture names that two conftests or plugins define differently."""
    sources = [*root.rglob("conftest.py"), *(root / "support").rglob("*.py")]
    seen: dict[str, tuple[Path, str]] = {}
    clashes = []
    for path in sorted(sources):
        for name, body in _fixture_definitions(path).items():
            if name in seen and seen[name][1] != body:
                clashes.append(
                    f"{name}: {seen[name][0].relative_to(root)} and {path.relative_to(root)}"
                )
            seen.setdefault(name, (path, body))
    return clashes


def test_tests_when_importing_then_never_from_a_conftest_or_a_test_module() -> None:
    assert forbidden_imports(TESTS) == []


def test_fixtures_when_defined_by_conftests_or_plugins_then_one_meaning_per_name() -> None:
    assert fixtures_with_two_meanings(TESTS) == []


def test_layout_checks_when_given_the_old_layout_then_each_finds_its_fault(tmp_path: Path) -> None:
    root = tmp_path / "tests"
    (root / "guard").mkdir(parents=True)
    (root / "stream").mkdir()
    (root / "guard" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef gateway():\n    return 'fast'\n"
    )
    (root / "stream" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef gateway():\n    return 'recording'\n"
    )
    (root / "stream" / "test_a.py").write_text(
        "from tests.guard.conftest import gateway\nfrom .conftest import gateway\n"
        "from tests.stream import test_b\n\ndef test_a():\n    from .test_b import helper\n"
    )

    assert forbidden_imports(root) == [
        "tests/stream/test_a.py:1 tests.guard.conftest",
        "tests/stream/test_a.py:2 tests.stream.conftest",
        "tests/stream/test_a.py:3 tests.stream.test_b",
        "tests/stream/test_a.py:6 tests.stream.test_b",
    ]
    assert fixtures_with_two_meanings(root) == ["gateway: guard/conftest.py and stream/conftest.py"]
