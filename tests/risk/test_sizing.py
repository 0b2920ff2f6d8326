"""The one sizing function and the one exposure function, and the pre-trade checks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.rounding import SymbolFilters
from risk.checks import (
    check_daily_loss,
    check_free_margin,
    check_kill_switch,
    check_max_open_positions,
    check_one_position_per_symbol,
)
from risk.sizing import allowed_margin, margin_excess, position_margin, position_size
from trading.models import Symbol

D = Decimal


def size(filters: SymbolFilters, equity: str, price: str, leverage: int = 2):
    return position_size(
        equity=D(equity),
        price=D(price),
        leverage=leverage,
        risk_pct=D("30"),
        max_risk_usd=D("600"),
        filters=filters,
    )


@pytest.fixture
def filters(defaults: None) -> dict[str, SymbolFilters]:
    return {s.name: s.filters for s in Symbol.objects.all()}


def test_size_when_btc_100000_and_bnb_964_then_scenario_quantities(filters) -> None:
    assert size(filters["BTCUSDT"], "1833.33", "100000").quantity == D("0.011")
    assert size(filters["BNBUSDT"], "1833.33", "964").quantity == D("1.14")


def test_size_when_margin_just_short_of_next_step_then_rounds_down_never_up(filters) -> None:
    # 1833.30 x 30 % = 549.99 USDT: 0.0109998 BTC, one step short of 0.011.
    assert size(filters["BTCUSDT"], "1833.30", "100000").quantity == D("0.010")


def test_size_when_margin_has_fractions_of_a_cent_then_counted_in_whole_cents(filters) -> None:
    # 1833.33 x 30 % = 549.999 USDT, a budget of 550.00: exactly 0.011 BTC at 100,000.
    sizing = size(filters["BTCUSDT"], "1833.33", "100000")

    assert sizing.margin == D("550.00")
    assert sizing.quantity == D("0.011")


def test_size_when_equity_large_then_margin_capped_at_max_risk_usd(filters) -> None:
    sizing = size(filters["BTCUSDT"], "100000", "100000")

    assert sizing.margin == D("600")
    assert sizing.quantity == D("0.012")


def test_size_when_below_min_qty_then_refused_with_reason(filters) -> None:
    sizing = size(filters["BTCUSDT"], "1", "100000")

    assert not sizing.ok
    assert sizing.refusal == "quantity 0.000006 rounds to 0.000, below minQty 0.001"


def test_size_when_below_min_notional_then_refused(filters) -> None:
    sizing = size(filters["BNBUSDT"], "6", "964")  # 1.8 x 2 / 964 -> 0.00 BNB

    assert not sizing.ok
    assert "below minQty" in sizing.refusal


def test_margin_when_position_then_quantity_times_entry_over_leverage() -> None:
    assert position_margin(quantity=D("0.011"), entry_price=D("100000"), leverage=2) == D("550")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["BTCUSDT", "BNBUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]),
    equity=st.decimals(min_value=D("50"), max_value=D("100000"), places=2),
    price_factor=st.decimals(min_value=D("0.2"), max_value=D("5"), places=3),
    leverage=st.integers(min_value=1, max_value=20),
    slippage_bp=st.integers(min_value=0, max_value=50),
)
def test_post_trade_when_engine_sized_the_trade_then_never_partially_closed(
    filters, name: str, equity: Decimal, price_factor: Decimal, leverage: int, slippage_bp: int
) -> None:
    # Arrange: a price around the symbol's scale, a fill up to 0.5 % worse, the taker fee paid.
    base = {"BTCUSDT": "100000", "BNBUSDT": "964", "ETHUSDT": "3500"}.get(name, "0.5")
    price = (D(base) * price_factor).quantize(filters[name].tick_size)
    sizing = size(filters[name], str(equity), str(price), leverage)
    if not sizing.ok:
        return
    fill = price * (1 + D(slippage_bp) / 10000)
    equity_after = equity - sizing.quantity * fill * D("0.0005")

    # Act
    excess = margin_excess(
        quantity=sizing.quantity,
        entry_price=fill,
        leverage=leverage,
        equity=equity_after,
        risk_pct=D("30"),
        max_risk_usd=D("600"),
        tolerance_pct=D("10"),
        filters=filters[name],
    )

    # Assert
    assert not excess.over_limit
    assert excess.close_quantity == 0


def test_excess_when_equity_halved_then_closes_down_to_allowed_margin(filters) -> None:
    excess = margin_excess(
        quantity=D("0.011"),
        entry_price=D("100000"),
        leverage=2,
        equity=D("916.67"),
        risk_pct=D("30"),
        max_risk_usd=D("600"),
        tolerance_pct=D("10"),
        filters=filters["BTCUSDT"],
    )

    assert excess.over_limit
    assert excess.close_quantity == D("0.005")  # 0.0055 excess, rounded down


def test_allowed_margin_when_negative_equity_then_zero() -> None:
    assert allowed_margin(equity=D("-5"), risk_pct=D("30"), max_risk_usd=D("600")) == 0


# ------------------------------------------------------------------ pre-trade checks
def test_check_kill_switch_when_off_then_denied_with_reason() -> None:
    assert check_kill_switch(enabled=True) is None
    assert check_kill_switch(enabled=False, reason="maintenance") == (
        "trading is halted (kill switch off: maintenance)"
    )


def test_check_one_position_when_open_here_or_on_exchange_then_denied() -> None:
    assert (
        check_one_position_per_symbol(symbol="X", open_in_db=False, open_on_exchange=False) is None
    )
    assert "already open" in check_one_position_per_symbol(
        symbol="X", open_in_db=True, open_on_exchange=False
    )
    assert "exchange already has" in check_one_position_per_symbol(
        symbol="X", open_in_db=False, open_on_exchange=True
    )


def test_check_max_open_positions_when_at_limit_then_denied() -> None:
    assert check_max_open_positions(open_positions=1, max_open_positions=2) is None
    assert check_max_open_positions(open_positions=2, max_open_positions=2) is not None


def test_check_free_margin_when_available_short_then_denied() -> None:
    assert check_free_margin(available=D("550"), margin=D("550")) is None
    assert check_free_margin(available=D("549.99"), margin=D("550")) is not None


def test_check_daily_loss_when_loss_reaches_limit_then_denied() -> None:
    assert check_daily_loss(realized_today=D("-99.99"), limit=D("100")) is None
    assert check_daily_loss(realized_today=D("-100"), limit=D("100")) is not None
    assert check_daily_loss(realized_today=D("-1000"), limit=None) is None
