"""Sizing with a slippage allowance: the margin stays within the cap on the fill price."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from risk.sizing import allowed_margin, position_margin, position_size
from trading.models import Symbol
from trading.services import position_open


@pytest.mark.parametrize("price", ["100000", "99999.9", "64321.7", "123456.7", "100099.9"])
@pytest.mark.parametrize("slippage_pct", ["0.05", "0.1", "0.5"])
def test_position_size_when_fill_up_to_the_allowance_then_margin_within_cap(
    btc: Symbol, price: str, slippage_pct: str
) -> None:
    price_read, allowance = Decimal(price), Decimal(slippage_pct)
    cap = allowed_margin(
        equity=Decimal("1833.33"), risk_pct=Decimal("30"), max_risk_usd=Decimal("600")
    )

    sizing = position_size(
        equity=Decimal("1833.33"),
        price=price_read,
        leverage=2,
        risk_pct=Decimal("30"),
        max_risk_usd=Decimal("600"),
        filters=btc.filters,
        slippage_pct=allowance,
    )

    worst_fill = price_read * (1 + allowance / 100)
    assert sizing.ok and sizing.quantity > 0
    assert position_margin(quantity=sizing.quantity, entry_price=worst_fill, leverage=2) <= cap


pytestmark_db = pytest.mark.django_db(transaction=True)


def open_long_with_fill_slippage(
    market: object, btc: Symbol, gateway: ExchangeGateway, allowance: str
) -> Decimal:
    """Open a long while every market order fills 0.1 % above the price; return its margin on
    the fill price."""
    RiskProfile.objects.update(entry_slippage_pct=Decimal(allowance))
    market.configure(slippage="0.001")
    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=gateway)
    assert outcome.ok, outcome
    position = outcome.position
    assert position.entry_price == Decimal("100100")
    return position_margin(
        quantity=position.quantity, entry_price=position.entry_price, leverage=position.leverage
    )


@pytestmark_db
def test_open_when_entry_fills_0_1_pct_higher_and_allowance_0_1_then_margin_within_cap(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    margin = open_long_with_fill_slippage(scenario_market, btc, recording_gateway, "0.1")

    assert margin <= Decimal("550.00")


@pytestmark_db
def test_open_when_entry_fills_higher_and_no_allowance_then_margin_over_cap(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # The failure the allowance exists for: sized on the price read, filled above it.
    margin = open_long_with_fill_slippage(scenario_market, btc, recording_gateway, "0")

    assert margin > Decimal("550.00")
