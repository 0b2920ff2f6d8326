"""Point imports of the old test helpers at ``tests.support``: ``python -m
tools.rewrite_test_imports FILE [FILE ...]``.

Helpers once imported from conftest files, fakes and test modules of other directories now live
in ``tests.support`` under the same names. ``from tests.guard.conftest import fast_gateway,
open_long`` becomes one import per new module. Imports of fixtures (which now come from the
``tests.support.plugins`` registered by the root conftest) are dropped. Fixture parameters named
``gateway`` or ``market`` are renamed by ``tools.rename_fixture``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Old module -> {name: new module}; None: a fixture now registered by a plugin, no import needed.
_EXCHANGE = "tests.support.exchange"
_FACTORIES = "tests.support.factories"
_PAPER = "tests.support.paper"
_LLM = "tests.support.fakes.llm"
_STREAM = "tests.support.stream"
_WORKER = "tests.support.celery_worker"
_FIXTURES = ("btc", "bnb", "sleeps", "gateway", "market", "guard", "expect_precision_rejection")
_FIXTURES += ("celery_eager", "celery_memory_broker", "telegram", "worker_factory", "llm_btc")
_FIXTURES += ("_no_precision_rejections",)

NAMES: dict[str, dict[str, str | None]] = {
    "tests.guard.conftest": {
        "fast_gateway": _EXCHANGE,
        "cancel_exit": _EXCHANGE,
        "open_algo_orders": _EXCHANGE,
        "open_long": _FACTORIES,
        "open_on_every_symbol": _FACTORIES,
        "app_log_lines": "tests.support.logs",
    },
    "tests.operator.conftest": {
        "exchange_quantity": _EXCHANGE,
        "exchange_order_count": _EXCHANGE,
    },
    "tests.faults.conftest": dict.fromkeys(
        (
            "PROTECTED",
            "FILTER_REJECTIONS",
            "CLIENT_TIMEOUT_SECONDS",
            "HELD_SECONDS",
            "SleepRecorder",
            "make_gateway",
            "exchange_quantity",
            "exchange_exit_types",
            "exchange_regular_orders",
            "accepted",
        ),
        _EXCHANGE,
    )
    | {"backdate": _FACTORIES},
    "tests.trading.conftest": {
        "SleepRecorder": _EXCHANGE,
        "exchange_quantity": _EXCHANGE,
        "exchange_exits": _EXCHANGE,
    },
    "tests.monitoring.conftest": {},  # fixtures only
    "tests.paper.conftest": dict.fromkeys(
        (
            "BTC",
            "BNB",
            "DOGE",
            "FUNDING_MS",
            "binance_code",
            "make_client",
            "position_amount",
            "usdt",
        ),
        _PAPER,
    ),
    "tests.signals.conftest": {"LLM_KEY": _LLM},
    "tests.signals.test_llm_agent": {"_entry": _LLM},
    "tests.stream.conftest": dict.fromkeys(
        (
            "RunningStream",
            "wait_for",
            "ledger_matches_exchange",
            "closed",
        ),
        _STREAM,
    ),
    "tests.celery.test_worker_cycles": dict.fromkeys(
        (
            "ROOT",
            "CELERY",
            "Stack",
            "_env",
            "_run",
            "_probe",
        ),
        _WORKER,
    ),
}
NAMES["tests.risk.conftest"] = NAMES["tests.trading.conftest"]  # it re-exported those
# Whole modules that moved: every name keeps its name.
MODULES = {
    "tests.monitoring.fake_telegram": "tests.support.fakes.telegram",
    "tests.monitoring.fake_bot_api": "tests.support.fakes.bot_api",
    "tests.signals.fake_llm": _LLM,
}

_FROM = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>[\w.]+) import (?P<names>\([^)]*\)|[^\n]*)\n", re.M
)


def _names(text: str) -> list[str]:
    lines = [line.split("#")[0] for line in text.strip("()").splitlines()]
    return [n.strip() for n in ",".join(lines).split(",") if n.strip()]


def _relative(module: str, path: Path) -> str:
    """``.conftest`` in tests/faults/x.py is ``tests.faults.conftest``."""
    if not module.startswith("."):
        return module
    package = ".".join(path.resolve().parent.parts[-2:])  # tests.<directory>
    return f"{package}.{module.lstrip('.')}"


def rewrite(source: str, path: Path) -> str:
    """``source`` with its imports of the old helper modules pointed at ``tests.support``."""

    def replace(match: re.Match[str]) -> str:
        indent, module = match["indent"], _relative(match["module"], path)
        if module in MODULES:
            return f"{indent}from {MODULES[module]} import {match['names']}\n"
        if module not in NAMES:
            return match[0]
        groups: dict[str, list[str]] = {}
        for name in _names(match["names"]):
            if name in NAMES[module]:
                groups.setdefault(NAMES[module][name], []).append(name)
            elif name not in _FIXTURES:
                raise SystemExit(f"{path}: no new home known for {module}.{name}")
        return "".join(
            f"{indent}from {new} import {', '.join(names)}\n"
            for new, names in sorted(groups.items())
        )

    return _FROM.sub(replace, source)


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        before = path.read_text()
        after = rewrite(before, path)
        if after != before:
            path.write_text(after)
            print(f"rewrote imports in {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
