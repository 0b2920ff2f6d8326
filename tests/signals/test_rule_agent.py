"""The rule-based agent: EMA crossover with an RSI filter, pure and reproducible."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from signals.agents import (
    InvalidParameters,
    RuleParameters,
    rule_decide,
    rule_lookback,
    rule_parameters_parse,
)
from tests.signals.candles import A_TURN, V_TURN, closed_at, one_minute_candles, shipped_candles

DEFAULTS = RuleParameters()


def test_rule_decide_when_fast_ema_crosses_above_with_rsi_below_overbought_then_long() -> None:
    candles = one_minute_candles(V_TURN)

    decision = rule_decide(
        candles=candles,
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=1,
        now=closed_at(candles),
    )

    assert decision.action == "LONG"
    assert decision.reason.startswith("EMA crossed up")
    assert "RSI14 64.54" in decision.reason
    assert decision.details["rsi14"].startswith("64.5")


def test_rule_decide_when_fast_ema_crosses_below_with_rsi_above_oversold_then_short() -> None:
    candles = one_minute_candles(A_TURN)

    decision = rule_decide(
        candles=candles,
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=1,
        now=closed_at(candles),
    )

    assert decision.action == "SHORT"
    assert "RSI14 35.46" in decision.reason


def test_rule_decide_when_crossover_but_rsi_overbought_then_hold_with_reason() -> None:
    candles = one_minute_candles(V_TURN)
    parameters = RuleParameters(rsi_overbought=Decimal(60))

    decision = rule_decide(
        candles=candles,
        parameters=parameters,
        interval_seconds=60,
        lookback=1,
        now=closed_at(candles),
    )

    assert decision.action == "HOLD"
    assert "overbought (>= 60)" in decision.reason


def test_rule_decide_when_crossover_older_than_lookback_then_hold() -> None:
    # One more rising candle: the crossover is now two candles back.
    candles = one_minute_candles([*V_TURN, 180])

    within = rule_decide(
        candles=candles,
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=2,
        now=closed_at(candles),
    )
    outside = rule_decide(
        candles=candles,
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=1,
        now=closed_at(candles),
    )

    assert within.action == "LONG"
    assert outside.action == "HOLD"
    assert outside.reason.startswith("no crossover in the last 1 candle(s)")


def test_rule_decide_when_last_candle_still_forming_then_it_is_ignored() -> None:
    # The crossover happens on the last candle, which has not closed yet at ``now``.
    candles = one_minute_candles(V_TURN)
    now = candles[-1].open_time + timedelta(seconds=30)

    decision = rule_decide(
        candles=candles, parameters=DEFAULTS, interval_seconds=60, lookback=1, now=now
    )

    assert decision.action == "HOLD"


def test_rule_decide_when_last_candle_older_than_two_intervals_then_hold_stale() -> None:
    candles = one_minute_candles(V_TURN)
    now = candles[-1].open_time + timedelta(seconds=121)

    decision = rule_decide(
        candles=candles, parameters=DEFAULTS, interval_seconds=60, lookback=1, now=now
    )

    assert decision.action == "HOLD"
    assert decision.reason.startswith("stale data: last candle opened 121s ago")


def test_rule_decide_when_too_few_candles_then_hold_with_count() -> None:
    candles = one_minute_candles(V_TURN[-20:])

    decision = rule_decide(
        candles=candles,
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=1,
        now=closed_at(candles),
    )

    assert decision.action == "HOLD"
    assert decision.reason == "not enough closed candles: 20 of 22"


def test_rule_decide_when_no_candles_then_hold() -> None:
    decision = rule_decide(
        candles=[],
        parameters=DEFAULTS,
        interval_seconds=60,
        lookback=1,
        now=closed_at(one_minute_candles([1])),
    )

    assert decision.action == "HOLD"
    assert decision.reason == "no candles from the exchange"


def test_rule_decide_when_same_candles_twice_then_same_decision() -> None:
    candles = one_minute_candles(V_TURN)
    now = closed_at(candles)

    first = rule_decide(
        candles=candles, parameters=DEFAULTS, interval_seconds=60, lookback=1, now=now
    )
    second = rule_decide(
        candles=list(candles), parameters=DEFAULTS, interval_seconds=60, lookback=1, now=now
    )

    assert first == second


def test_rule_decide_when_replaying_shipped_btc_candles_every_5_minutes_then_fixed_decisions() -> (
    None
):
    # What a 300 s cycle on 1m candles sees over the shipped two days of BTCUSDT: the newest 100
    # candles each time (the service's fetch size), a crossover counted within 5 candles.
    candles = shipped_candles("BTCUSDT")
    decisions = []
    for end in range(100, len(candles) + 1, 5):
        window = candles[end - 100 : end]
        decisions.append(
            rule_decide(
                candles=window,
                parameters=DEFAULTS,
                interval_seconds=60,
                lookback=5,
                now=closed_at(window),
            )
        )

    counts = Counter(d.action for d in decisions)
    first_trades = [(i, d.action) for i, d in enumerate(decisions) if d.action != "HOLD"][:6]
    filtered = [d.reason for d in decisions if "oversold" in d.reason or "overbought" in d.reason]

    assert len(candles) == 2880
    assert counts == {"HOLD": 457, "LONG": 51, "SHORT": 49}
    assert first_trades == FIRST_BTC_TRADES
    assert len(filtered) == 1


FIRST_BTC_TRADES = [
    (9, "LONG"),
    (10, "SHORT"),
    (25, "LONG"),
    (26, "SHORT"),
    (27, "LONG"),
    (30, "SHORT"),
]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"ema_fsat": 9}, "unknown parameter(s): ema_fsat"),
        ({"ema_fast": 21, "ema_slow": 9}, "ema_fast (21) must be shorter than ema_slow (9)"),
        ({"ema_fast": 9.5}, "ema_fast must be a whole number"),
        ({"ema_fast": True}, "ema_fast must be a whole number"),
        ({"rsi_period": 0}, "rsi_period must be between 2 and 200"),
        ({"rsi_oversold": 55}, "need rsi_oversold < 50 < rsi_overbought"),
        ({"rsi_overbought": "NaN"}, "rsi_overbought must be between 0 and 100"),
        ({"rsi_overbought": "high"}, "rsi_overbought must be a number"),
    ],
)
def test_rule_parameters_parse_when_invalid_then_refused_with_reason(
    parameters: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidParameters) as refused:
        rule_parameters_parse(parameters)

    assert message in str(refused.value)


def test_rule_parameters_parse_when_shipped_defaults_then_accepted() -> None:
    parsed = rule_parameters_parse(
        {"ema_fast": 9, "ema_slow": 21, "rsi_period": 14, "rsi_overbought": 70, "rsi_oversold": 30}
    )

    assert parsed == RuleParameters()


def test_rule_lookback_when_cycle_spans_five_candles_then_five() -> None:
    assert rule_lookback(parameters=DEFAULTS, cycle_seconds=300, interval_seconds=60) == 5
    assert rule_lookback(parameters=DEFAULTS, cycle_seconds=10, interval_seconds=60) == 1
    assert (
        rule_lookback(
            parameters=RuleParameters(cross_lookback=3), cycle_seconds=300, interval_seconds=60
        )
        == 3
    )
