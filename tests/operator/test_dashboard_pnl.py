"""The dashboard's realized PnL today is the daily loss limit's figure, unknown closes named."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from risk.models import RiskProfile
from trading.models import Position, Symbol
from trading.services import position_open


def closed(*, pnl: str | None, awaiting: bool = False) -> Position:
    return Position.objects.create(
        symbol=Symbol.objects.get(name="BTCUSDT"),
        side=Position.Side.LONG,
        status=Position.Status.CLOSED,
        quantity=Decimal("0.011"),
        leverage=2,
        margin_type="ISOLATED",
        closed_at=timezone.now(),
        realized_pnl=None if pnl is None else Decimal(pnl),
        awaiting_fills=awaiting,
    )


@pytest.mark.django_db
def test_dashboard_when_closes_today_and_one_awaiting_fills_then_limit_figure_and_unknown_shown(
    defaults: None, settings
) -> None:
    settings.PAPER_EXCHANGE_URL = "http://127.0.0.1:9"  # the exchange is not needed here
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw"))
    closed(pnl="-3.30")
    closed(pnl="1.25")
    closed(pnl=None, awaiting=True)
    RiskProfile.objects.update(daily_loss_limit_usd=Decimal("100"))

    html = client.get(reverse("dashboard")).content.decode()
    refused = position_open(symbol=Symbol.objects.get(name="BNBUSDT"), side="LONG", reason="t")

    assert "-2.05 USDT" in html
    assert "1 close(s) waiting for their fills" in html
    assert refused.status == "refused" and "not known yet" in refused.reason
