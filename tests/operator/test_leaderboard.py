"""The agents' leaderboard against the books: a replay with two agents (manual on BTCUSDT, the
LLM on BNBUSDT), each trade opened by a real cycle and closed by its exit on the exchange."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from dashboard.leaderboard import agent_leaderboard
from signals.cycles import trade_cycle_run
from signals.models import ManualSignal
from tests.support.exchange import fast_gateway
from tests.support.fakes.llm import LLM_KEY, FakeLlm
from trading.guard import guard_pass
from trading.models import Position, Strategy, Symbol

BTC_PRICE, BNB_PRICE = "100000", "964"


def _llm_short() -> dict[str, Any]:
    return {
        "BNBUSDT": {
            "signal": "sell_to_enter",
            "confidence": 0.7,
            "profit_target": 955,
            "stop_loss": 970,
            "invalidation_condition": "a close above 970",
            "justification": "lower highs",
        }
    }


@pytest.fixture
def llm(settings: Any) -> Any:
    server = FakeLlm().start()
    settings.LLM_API_URL = server.url
    settings.LLM_API_KEY = LLM_KEY
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_agents(transactional_db: None, defaults: None, paper: Any, llm: FakeLlm) -> Any:
    paper.set_balance("USDT", "10000")
    paper.set_price("BTCUSDT", BTC_PRICE)
    paper.set_price("BNBUSDT", BNB_PRICE)
    Strategy.objects.filter(symbol__name="BTCUSDT").update(agent=Strategy.Agent.MANUAL)
    Strategy.objects.filter(symbol__name="BNBUSDT").update(
        agent=Strategy.Agent.LLM, llm_model="fake-model", llm_timeout_seconds=5
    )
    return paper


def _trade(paper: Any, llm: FakeLlm, symbol: str, exit_price: str) -> Position:
    """One replayed trade: the agent's cycle opens it, the price reaches an exit, the guard
    records the close from the exchange."""
    instance = Symbol.objects.get(name=symbol)
    if symbol == "BTCUSDT":
        paper.set_price(symbol, BTC_PRICE)
        ManualSignal.objects.create(symbol=instance, action="LONG", created_by="test")
    else:
        paper.set_price(symbol, BNB_PRICE)
        llm.answer(_llm_short())
    outcome = trade_cycle_run(symbol_id=instance.pk, gateway=fast_gateway())
    assert outcome.opened is not None and outcome.opened.ok, outcome
    paper.set_price(symbol, exit_price)
    guard_pass(gateway=fast_gateway())
    position = Position.objects.get(pk=outcome.opened.position.pk)
    assert position.status == Position.Status.CLOSED, position
    return position


REPLAY = [  # manual on BTCUSDT: win, loss, win; the LLM on BNBUSDT (short): loss, win
    ("BTCUSDT", "100600"),
    ("BNBUSDT", "968"),
    ("BTCUSDT", "99600"),
    ("BNBUSDT", "959"),
    ("BTCUSDT", "100600"),
]


def test_leaderboard_when_two_agents_replayed_then_figures_equal_the_books(
    two_agents: Any, llm: FakeLlm
) -> None:
    for symbol, exit_price in REPLAY:
        _trade(two_agents, llm, symbol, exit_price)

    board = {(s.agent, s.symbol): s for s in agent_leaderboard(since=None)}

    assert set(board) == {("manual", "BTCUSDT"), ("llm", "BNBUSDT")}
    for (agent, symbol), score in board.items():
        books = list(
            Position.objects.filter(symbol__name=symbol, status=Position.Status.CLOSED).order_by(
                "closed_at"
            )
        )
        pnls = [p.realized_pnl for p in books]
        gains = sum((pnl for pnl in pnls if pnl > 0), Decimal(0))
        losses = -sum((pnl for pnl in pnls if pnl < 0), Decimal(0))
        assert score.trades == len(books), agent
        assert score.realized_pnl == sum(pnls, Decimal(0)), agent
        assert score.fees == sum((p.fees for p in books), Decimal(0)), agent
        assert score.wins == sum(1 for pnl in pnls if pnl > 0), agent
        assert score.profit_factor == (
            (gains / losses).quantize(Decimal("0.01")) if losses else None
        ), agent
        held = sum(((p.closed_at - p.opened_at).total_seconds() for p in books), 0.0)
        assert score.average_holding_seconds == pytest.approx(held / len(books))
    assert (board[("manual", "BTCUSDT")].trades, board[("llm", "BNBUSDT")].trades) == (3, 2)


def test_leaderboard_when_two_agents_replayed_then_figures_equal_the_exchange_fills(
    two_agents: Any, llm: FakeLlm
) -> None:
    for symbol, exit_price in REPLAY:
        _trade(two_agents, llm, symbol, exit_price)

    board = {(s.agent, s.symbol): s for s in agent_leaderboard(since=None)}

    gateway = fast_gateway()
    for (agent, symbol), score in board.items():
        fills = gateway.fetch_fills(symbol=symbol, since=None)
        fees = sum((f.commission for f in fills), Decimal(0))
        assert score.fees == fees, agent
        assert score.realized_pnl == sum((f.realized_pnl for f in fills), Decimal(0)) - fees


def test_leaderboard_when_period_excludes_closes_then_empty(two_agents: Any) -> None:
    from django.utils import timezone

    assert agent_leaderboard(since=timezone.now()) == []
