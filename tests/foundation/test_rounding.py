"""The rounding module over the real filters of every fixture symbol."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.rounding import (
    ExitTooClose,
    SymbolFilters,
    check_quantity,
    exit_prices,
    round_quantity,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "defaults.json"


def _fixture_filters() -> list[SymbolFilters]:
    rows = [o for o in json.loads(FIXTURE.read_text()) if o["model"] == "trading.symbol"]
    return [
        SymbolFilters(
            symbol=r["fields"]["name"],
            tick_size=Decimal(r["fields"]["tick_size"]),
            step_size=Decimal(r["fields"]["step_size"]),
            min_qty=Decimal(r["fields"]["min_qty"]),
            max_qty=Decimal(r["fields"]["max_qty"]),
            market_step_size=Decimal(r["fields"]["market_step_size"]),
            market_min_qty=Decimal(r["fields"]["market_min_qty"]),
            market_max_qty=Decimal(r["fields"]["market_max_qty"]),
            min_notional=Decimal(r["fields"]["min_notional"]),
            price_precision=r["fields"]["price_precision"],
            quantity_precision=r["fields"]["quantity_precision"],
        )
        for r in rows
    ]


ALL_FILTERS = _fixture_filters()
BY_NAME = {f.symbol: f for f in ALL_FILTERS}
quantities = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=8)
prices = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("200000"), places=6)


def _decimals(value: Decimal) -> int:
    return max(0, -value.normalize().as_tuple().exponent)


@settings(max_examples=300)
@given(filters=st.sampled_from(ALL_FILTERS), wanted=quantities, market=st.booleans())
def test_round_quantity_when_any_input_then_multiple_of_step_and_not_above_input(
    filters: SymbolFilters, wanted: Decimal, market: bool
) -> None:
    rounded = round_quantity(wanted, filters, market=market)

    step = filters.market_step_size if market else filters.step_size
    assert rounded % step == 0
    assert rounded <= wanted
    assert wanted - rounded < step
    assert _decimals(rounded) <= filters.quantity_precision


@settings(max_examples=300)
@given(
    filters=st.sampled_from(ALL_FILTERS),
    wanted=quantities,
    price=prices,
    reduce_only=st.booleans(),
)
def test_check_quantity_when_accepted_then_exchange_filters_hold(
    filters: SymbolFilters, wanted: Decimal, price: Decimal, reduce_only: bool
) -> None:
    check = check_quantity(wanted, price, filters, market=True, reduce_only=reduce_only)

    if check.ok:
        assert filters.market_min_qty <= check.quantity <= filters.market_max_qty
        assert check.quantity % filters.market_step_size == 0
        assert reduce_only or check.quantity * price >= filters.min_notional
    else:
        assert check.refusal


@settings(max_examples=300)
@given(
    filters=st.sampled_from(ALL_FILTERS),
    ticks=st.integers(min_value=10_000, max_value=10_000_000),
    side=st.sampled_from(["LONG", "SHORT"]),
    tp_pct=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("20"), places=2),
    sl_pct=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("20"), places=2),
)
def test_exit_prices_when_any_entry_then_on_tick_and_never_beyond_the_rule(
    filters: SymbolFilters, ticks: int, side: str, tp_pct: Decimal, sl_pct: Decimal
) -> None:
    entry = filters.tick_size * ticks  # fills happen on the tick

    take_profit, stop_loss = exit_prices(
        side=side,
        entry_price=entry,
        take_profit_pct=tp_pct,
        stop_loss_pct=sl_pct,
        filters=filters,
    )

    assert take_profit % filters.tick_size == 0
    assert stop_loss % filters.tick_size == 0
    assert _decimals(stop_loss) <= filters.price_precision
    allowed_loss = entry * sl_pct / 100
    assert abs(entry - stop_loss) <= allowed_loss
    if side == "LONG":
        assert stop_loss < entry < take_profit
    else:
        assert take_profit < entry < stop_loss


def test_check_quantity_when_default_btc_trade_then_0_011() -> None:
    check = check_quantity(
        Decimal("1100") / Decimal("100000"), Decimal("100000"), BY_NAME["BTCUSDT"], market=True
    )

    assert check.ok
    assert check.quantity == Decimal("0.011")


def test_check_quantity_when_partial_close_below_min_qty_then_refused_with_reason() -> None:
    check = check_quantity(
        Decimal("0.0006"), Decimal("964"), BY_NAME["BNBUSDT"], market=True, reduce_only=True
    )

    assert not check.ok
    assert "below minQty 0.01" in check.refusal


def test_check_quantity_when_notional_below_minimum_then_refused_unless_reduce_only() -> None:
    btc = BY_NAME["BTCUSDT"]

    entry = check_quantity(Decimal("0.001"), Decimal("4000"), btc, market=True)
    close = check_quantity(Decimal("0.001"), Decimal("4000"), btc, market=True, reduce_only=True)

    assert "below minNotional" in entry.refusal
    assert close.ok


@pytest.mark.parametrize(
    ("side", "expected_tp", "expected_sl"),
    [
        ("LONG", Decimal("100500.0"), Decimal("99700.0")),
        ("SHORT", Decimal("99500.0"), Decimal("100300.0")),
    ],
)
def test_exit_prices_when_btc_at_100000_then_default_tp_and_sl(
    side: str, expected_tp: Decimal, expected_sl: Decimal
) -> None:
    tp, sl = exit_prices(
        side=side,
        entry_price=Decimal("100000"),
        take_profit_pct=Decimal("0.5"),
        stop_loss_pct=Decimal("0.3"),
        filters=BY_NAME["BTCUSDT"],
    )

    assert (tp, sl) == (expected_tp, expected_sl)


def test_exit_prices_when_distance_under_one_tick_then_refused() -> None:
    with pytest.raises(ExitTooClose, match="less than one tick"):
        exit_prices(
            side="LONG",
            entry_price=Decimal("100.0"),
            take_profit_pct=Decimal("0.5"),
            stop_loss_pct=Decimal("0.05"),
            filters=BY_NAME["BTCUSDT"],
        )
