"""The Telegram console against a fake Bot API: every command through the admin's services,
unknown chats unanswered, /closeall only with its code."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from dashboard.console import Console, console_run
from monitoring.telegram import TelegramConfig
from risk.models import RuleChange
from tests.support.exchange import exchange_quantity, fast_gateway
from tests.support.fakes.bot_api import TOKEN, FakeBotApi
from trading.guard import guard_pass
from trading.models import Position, TradeEvent, TradingSwitch

CHAT = "4242"
STRANGER = "999"
ACTOR = f"telegram:{CHAT}/op"
REPLY_SECONDS = 30


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    api = FakeBotApi().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def ask(transactional_db: None, bot_api: FakeBotApi) -> Iterator[Callable[..., str]]:
    """The console running in its own thread, as its process does; ``ask`` writes a message
    from the allowed chat and returns the reply."""
    stop = threading.Event()
    config = TelegramConfig(token=TOKEN, chat_id=CHAT, api_url=bot_api.url)

    def run() -> None:
        try:
            console_run(
                console=Console(allowed_chat_ids={CHAT}), config=config, stop=stop, poll_seconds=1
            )
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def _ask(text: str, *, chat: str = CHAT) -> str:
        before = len(bot_api.replies_to(chat))
        bot_api.push(chat, text)
        deadline = time.monotonic() + REPLY_SECONDS
        while time.monotonic() < deadline:
            replies = bot_api.replies_to(chat)
            if len(replies) > before:
                return replies[-1]
            time.sleep(0.05)
        pytest.fail(f"no reply to {text!r}")

    yield _ask
    stop.set()
    thread.join(timeout=10)


def test_status_when_position_open_then_switch_position_and_heartbeats(ask, open_position) -> None:
    open_position("BTCUSDT", "LONG")
    guard_pass(gateway=fast_gateway())

    reply = ask("/status")

    assert reply.startswith("Trading ENABLED")
    assert "BTCUSDT LONG 0.012 @ 100000.0 | uPnL 0.00 USDT | SL TP" in reply
    assert "guard: " in reply and "sentinel: never" in reply


def test_positions_when_two_open_then_both_listed_on_tick_and_step(ask, open_position) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")

    reply = ask("/positions")

    assert "BNBUSDT SHORT 1.24 @ 964.00" in reply
    assert "BTCUSDT LONG 0.012 @ 100000.0" in reply


def test_pnl_when_trade_closed_then_realized_equals_books(
    ask, funded_market, open_position
) -> None:
    position = open_position("BTCUSDT", "LONG")
    funded_market.set_price("BTCUSDT", "99600")
    guard_pass(gateway=fast_gateway())
    position.refresh_from_db()
    assert position.realized_pnl is not None and position.realized_pnl < 0

    day, week, bad = ask("/pnl"), ask("/pnl week"), ask("/pnl month")

    expected = f"{position.realized_pnl.quantize(Decimal('0.01'))}"
    assert day.startswith(f"Realized PnL (day): {expected} USDT") and "1 trade(s), 0 won" in day
    assert week.startswith(f"Realized PnL (week): {expected} USDT")
    assert bad == "Usage: /pnl [day|week]"


def test_pause_and_resume_when_sent_then_switch_changed_with_telegram_actor(ask, defaults) -> None:
    refused = ask("/pause")
    assert TradingSwitch.load().enabled is True and "reason is required" in refused

    paused = ask("/pause spread too wide")

    switch = TradingSwitch.load()
    assert (switch.enabled, switch.reason, switch.changed_by) == (
        False,
        "spread too wide",
        ACTOR,
    )
    assert paused == "Trading HALTED: spread too wide"
    assert RuleChange.objects.filter(model="trading.tradingswitch", changed_by=ACTOR).exists()

    assert ask("/resume") == "Trading ENABLED"
    assert TradingSwitch.load().enabled is True


def test_close_when_symbol_open_then_flat_on_exchange_and_event_by_telegram(
    ask, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")

    reply = ask("/close btcusdt")

    assert reply.startswith("BTCUSDT: closed")
    assert exchange_quantity(funded_market, "BTCUSDT") == 0
    assert exchange_quantity(funded_market, "BNBUSDT") != 0
    assert TradeEvent.objects.filter(kind="CLOSED", actor=ACTOR).count() == 1
    assert ask("/close BTCUSDT") == "No open position in BTCUSDT."
    assert ask("/close NOPEUSDT") == "Unknown symbol NOPEUSDT."


def test_closeall_when_no_code_or_wrong_code_then_nothing_done(
    ask, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")

    asked = ask("/closeall")
    wrong = ask("/closeall 1234567")

    assert "To confirm, send within" in asked and re.search(r"/closeall \d{6}$", asked)
    assert wrong.startswith("Wrong or expired code: nothing done")
    assert exchange_quantity(funded_market, "BTCUSDT") != 0
    assert TradingSwitch.load().enabled is True
    # The code was spent by the wrong try: the right one no longer works either.
    code = re.search(r"/closeall (\d{6})$", asked).group(1)
    assert ask(f"/closeall {code}").startswith("Wrong or expired code")
    assert exchange_quantity(funded_market, "BTCUSDT") != 0


def test_closeall_when_code_confirmed_then_exchange_flat_and_halted(
    ask, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")
    code = re.search(r"/closeall (\d{6})$", ask("/closeall")).group(1)

    report = ask(f"/closeall {code}")

    assert funded_market.positions() == []
    assert funded_market.open_orders() == {"orders": [], "algo_orders": []}
    assert "BTCUSDT: CLOSED" in report.upper() and "BNBUSDT: CLOSED" in report.upper()
    assert "Flat: nothing is open." in report
    switch = TradingSwitch.load()
    assert (switch.enabled, switch.changed_by) == (False, ACTOR)
    assert Position.objects.filter(status__in=Position.OPEN_STATUSES).count() == 0


def test_console_when_unknown_chat_then_no_answer_nothing_done_and_logged(
    ask, bot_api: FakeBotApi, funded_market, open_position, caplog: pytest.LogCaptureFixture
) -> None:
    open_position("BTCUSDT", "LONG")

    bot_api.push(STRANGER, "/pause hostile")
    bot_api.push(STRANGER, "/closeall")
    ask("/status")  # answered only after the stranger's messages were handled, in order

    assert bot_api.replies_to(STRANGER) == []
    assert TradingSwitch.load().enabled is True
    assert exchange_quantity(funded_market, "BTCUSDT") != 0
    assert f"message from chat {STRANGER} (op) not allowed" in caplog.text


def test_telegram_console_command_when_once_then_answers_allowed_chat(
    bot_api: FakeBotApi, defaults: None, settings: Any
) -> None:
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_API_URL = bot_api.url
    settings.TELEGRAM_CHAT_ID = CHAT
    settings.TELEGRAM_CONSOLE_CHAT_IDS = []
    bot_api.push(CHAT, "/help")
    bot_api.push(STRANGER, "/status")

    call_command("telegram_console", "--once", "--poll-seconds", "1")

    assert bot_api.replies_to(CHAT) == [
        "Unknown command. /status · /positions · /pnl [day|week] · /pause <reason> · /resume · "
        "/close <SYMBOL> · /closeall"
    ]
    assert bot_api.replies_to(STRANGER) == []
