"""``manage.py reconcile [--repair]``: differences between the database and the exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.support.exchange import exchange_order_count, exchange_quantity
from trading.gateway import exchange_gateway
from trading.models import Order, Position, Symbol
from trading.reconcile import GRACE_SECONDS


def _settle() -> None:
    """Age every row past the grace period, as if the last write was minutes ago."""
    then = timezone.now() - timedelta(seconds=GRACE_SECONDS * 2)
    Position.objects.update(opened_at=then)
    Order.objects.update(updated_at=then, created_at=then)


@pytest.fixture
def closed_by_hand(transactional_db: None, open_position) -> Position:
    """A BTCUSDT long the bot opened, then closed on the exchange by a person."""
    position = open_position("BTCUSDT", "LONG")
    exchange_gateway().create_market_order(
        symbol="BTCUSDT",
        side="SELL",
        quantity=position.quantity,
        client_order_id="manual-close-1",
        reduce_only=True,
    )
    _settle()
    return position


@pytest.fixture
def orphan_order(transactional_db: None, funded_market) -> Order:
    """Our stop-loss still on the exchange for a BNBUSDT position closed here long ago."""
    bnb = Symbol.objects.get(name="BNBUSDT")
    position = Position.objects.create(
        symbol=bnb,
        side=Position.Side.LONG,
        status=Position.Status.CLOSED,
        quantity=Decimal("1"),
        entry_price=Decimal("964"),
        leverage=2,
        margin_type="ISOLATED",
        closed_at=timezone.now(),
        close_reason=Position.CloseReason.SIGNAL,
    )
    order = Order.objects.create(
        symbol=bnb,
        position=position,
        purpose=Order.Purpose.STOP_LOSS,
        side="SELL",
        order_type="STOP_MARKET",
        stop_price=Decimal("900"),
        close_position=True,
        is_conditional=True,
        client_order_id="arena-orphan-sl",
        status=Order.Status.OPEN,
    )
    # A stop left behind after its position went flat: Binance refuses to place one with no
    # position (-4509), so the exchange plays its other observed side, which keeps such leftovers.
    funded_market.set_options(close_without_position="accept")
    exchange_gateway().create_exit_order(
        symbol="BNBUSDT",
        side="SELL",
        kind="SL",
        stop_price=Decimal("900"),
        client_order_id=order.client_order_id,
    )
    _settle()
    return order


def test_reconcile_when_position_closed_on_exchange_then_reported_and_exit_1(
    funded_market, closed_by_hand: Position
) -> None:
    out = StringIO()

    with pytest.raises(CommandError) as left:
        call_command("reconcile", stdout=out)

    assert left.value.returncode == 1
    assert "[closed on exchange] BTCUSDT" in out.getvalue()
    closed_by_hand.refresh_from_db()
    assert closed_by_hand.status == Position.Status.OPEN


def test_reconcile_when_repair_and_position_closed_on_exchange_then_recorded_closed(
    funded_market, closed_by_hand: Position
) -> None:
    out = StringIO()

    call_command("reconcile", "--repair", stdout=out)

    closed_by_hand.refresh_from_db()
    assert closed_by_hand.status == Position.Status.CLOSED
    assert closed_by_hand.exit_price is not None
    assert closed_by_hand.realized_pnl is not None
    assert "recorded closed" in out.getvalue()
    assert not Order.objects.filter(
        position=closed_by_hand, status__in=Order.ACTIVE_STATUSES
    ).exists()


def test_reconcile_when_orphan_order_then_reported_and_left_on_exchange(
    funded_market, orphan_order: Order
) -> None:
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("reconcile", stdout=out)

    assert "[orphan order] BNBUSDT" in out.getvalue()
    assert exchange_order_count(funded_market) == 1


def test_reconcile_when_repair_and_orphan_order_then_cancelled_on_exchange(
    funded_market, orphan_order: Order
) -> None:
    out = StringIO()

    call_command("reconcile", "--repair", stdout=out)

    assert exchange_order_count(funded_market) == 0
    orphan_order.refresh_from_db()
    assert orphan_order.status == Order.Status.CANCELED
    assert "cancelled" in out.getvalue()


def test_reconcile_when_repair_and_entry_never_sent_then_marked_lost(
    funded_market, transactional_db: None
) -> None:
    btc = Symbol.objects.get(name="BTCUSDT")
    position = Position.objects.create(
        symbol=btc, side=Position.Side.LONG, leverage=2, margin_type="ISOLATED"
    )
    entry = Order.objects.create(
        symbol=btc,
        position=position,
        purpose=Order.Purpose.ENTRY,
        side="BUY",
        order_type="MARKET",
        quantity=Decimal("0.01"),
        client_order_id="arena-lost-entry",
        status=Order.Status.SENT,
    )
    _settle()

    call_command("reconcile", "--repair", stdout=StringIO())

    position.refresh_from_db()
    entry.refresh_from_db()
    assert position.status == Position.Status.FAILED
    assert entry.status == Order.Status.EXPIRED


def test_reconcile_when_database_and_exchange_agree_then_exit_0(
    funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    _settle()
    out = StringIO()

    call_command("reconcile", stdout=out)

    assert "agree" in out.getvalue()
    assert exchange_quantity(funded_market, "BTCUSDT") > 0
