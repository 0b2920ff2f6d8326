"""signal_for_symbol: the entry point a trade cycle calls, for every agent."""

from __future__ import annotations

from typing import Any

from signals.models import SignalDecision
from signals.services import signal_for_symbol
from trading.gateway import exchange_gateway
from trading.models import Strategy, Symbol


def test_signal_for_symbol_when_rule_agent_on_paper_candles_then_decision_stored(
    defaults: None, paper: Any
) -> None:
    paper.set_price("BTCUSDT", "100000")
    btc = Symbol.objects.get(name="BTCUSDT")

    decision = signal_for_symbol(symbol=btc, gateway=exchange_gateway())

    stored = SignalDecision.objects.get(id=decision.decision_id)
    assert (stored.symbol, stored.agent, stored.action) == (btc, "rule", decision.action)
    assert stored.reason == decision.reason
    assert not decision.reason.startswith("stale data")
    assert {"close", "ema9", "ema21", "rsi14"} <= set(stored.details)


def test_signal_for_symbol_when_parameters_invalid_then_hold_with_reason(
    defaults: None, paper: Any
) -> None:
    Strategy.objects.filter(symbol__name="BTCUSDT").update(
        parameters={"ema_fast": 30, "ema_slow": 10}
    )

    decision = signal_for_symbol(
        symbol=Symbol.objects.get(name="BTCUSDT"), gateway=exchange_gateway()
    )

    assert decision.action == "HOLD"
    assert decision.reason == (
        "invalid strategy parameters: ema_fast (30) must be shorter than ema_slow (10)"
    )
    assert SignalDecision.objects.get(id=decision.decision_id).action == "HOLD"


def test_signal_for_symbol_when_symbol_disabled_then_hold_without_asking_the_agent(
    defaults: None, paper: Any
) -> None:
    eth = Symbol.objects.get(name="ETHUSDT")
    before = paper.stats()

    decision = signal_for_symbol(symbol=eth, gateway=exchange_gateway())

    assert (decision.action, decision.reason) == ("HOLD", "symbol is disabled")
    assert paper.stats() == before
    assert SignalDecision.objects.filter(symbol=eth).count() == 1


def test_signal_for_symbol_when_symbol_has_no_strategy_then_hold(
    defaults: None, paper: Any
) -> None:
    Strategy.objects.filter(symbol__name="BNBUSDT").delete()

    decision = signal_for_symbol(
        symbol=Symbol.objects.get(name="BNBUSDT"), gateway=exchange_gateway()
    )

    assert (decision.action, decision.reason) == ("HOLD", "symbol has no strategy")
