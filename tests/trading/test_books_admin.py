"""The admin shows each position's fills, read only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from trading.models import Fill, Order, Position, Symbol

pytestmark = pytest.mark.django_db


def test_admin_when_position_has_fills_then_its_page_lists_them_read_only(defaults: None) -> None:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    btc = Symbol.objects.get(name="BTCUSDT")
    position = Position.objects.create(
        symbol=btc, side="LONG", status="CLOSED", leverage=2, margin_type="ISOLATED"
    )
    order = Order.objects.create(
        symbol=btc,
        position=position,
        purpose="ENTRY",
        side="BUY",
        order_type="MARKET",
        client_order_id="arena-1-entry-x",
        exchange_order_id="41",
    )
    Fill.objects.create(
        symbol=btc,
        order=order,
        position=position,
        trade_id=987654,
        exchange_order_id="41",
        side="BUY",
        quantity=Decimal("0.011"),
        price=Decimal("100000"),
        realized_pnl=Decimal("0"),
        commission=Decimal("0.55"),
        commission_usdt=Decimal("0.55"),
        time=datetime(2026, 1, 5, 12, tzinfo=UTC),
    )

    page = client.get(f"/admin/trading/position/{position.pk}/change/").content.decode()

    assert "987654" in page and "0.55" in page
    assert 'name="fills-0-price"' not in page
