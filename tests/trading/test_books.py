"""The fills ledger against the paper exchange: each position's PnL from its own fills only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from risk.models import RiskProfile
from trading.fills import fill_record, positions_books_complete
from trading.gateway import exchange_gateway
from trading.models import Fill, Order, Position, Symbol
from trading.services import (
    CloseOutcome,
    position_close,
    position_open,
    position_record_exchange_close,
)

pytestmark = pytest.mark.django_db(transaction=True)


class DrivenClock:
    """The retry policy's clock and sleep in one: a retry "waits" by moving this clock, so an
    outage the test drives costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway(paper: object) -> ExchangeGateway:
    clock = DrivenClock()
    return exchange_gateway(
        retry_policy=RetryPolicy(max_total_seconds=20, sleep=clock.sleep, clock=clock)
    )


def exchange_trades(gateway: ExchangeGateway, symbol: str) -> dict[int, object]:
    """Every trade of the account in ``symbol``, by trade id (read straight from userTrades)."""
    return {t.trade_id: t for t in gateway.fetch_fills(symbol=symbol, since=None)}


def exchange_order_ids(gateway: ExchangeGateway, position: Position) -> set[str]:
    """The exchange order ids whose trades belong to ``position``: its regular orders, and for
    each of its stops and targets the market order the exchange says it became."""
    ids = set()
    for order in position.orders.all():
        found = gateway.fetch_order(
            symbol=position.symbol.name,
            client_order_id=order.client_order_id,
            conditional=order.is_conditional,
        )
        if found is None:
            continue
        if order.is_conditional:
            if found.actual_order_id:
                ids.add(found.actual_order_id)
        else:
            ids.add(found.exchange_order_id)
    return ids


def assert_books_match_exchange(gateway: ExchangeGateway, position: Position) -> None:
    position.refresh_from_db()
    trades = exchange_trades(gateway, position.symbol.name)
    own = {
        tid: t for tid, t in trades.items() if t.order_id in exchange_order_ids(gateway, position)
    }
    assert set(position.fills.values_list("trade_id", flat=True)) == set(own)
    fees = sum((t.commission for t in own.values()), Decimal(0))
    realized = sum((t.realized_pnl for t in own.values()), Decimal(0))
    assert position.fees == fees
    assert position.realized_pnl == realized - fees
    assert position.closed_at == max(t.time for t in own.values())


def test_close_when_b_opens_seconds_after_a_stopped_out_then_each_keeps_its_own_pnl(
    scenario_market: object, btc: Symbol, gateway: ExchangeGateway
) -> None:
    a = position_open(symbol=btc, side="LONG", reason="A", gateway=gateway).position
    scenario_market.set_price("BTCUSDT", "99600")  # through A's stop at 99700
    assert position_record_exchange_close(position=a, gateway=gateway).status == "closed"
    b = position_open(symbol=btc, side="LONG", reason="B", gateway=gateway).position
    scenario_market.set_price("BTCUSDT", "99800")

    outcome = position_close(position=b, reason="MANUAL", gateway=gateway)

    assert outcome.status == CloseOutcome.CLOSED
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.close_reason, b.close_reason) == ("SL", "MANUAL")
    # A: 0.011 bought at 100000, sold at 99600 by its stop: -4.40, fees 0.55 + 0.5478.
    assert a.realized_pnl == Decimal("-4.4") - Decimal("0.55") - Decimal("0.5478")
    assert a.exit_price == Decimal("99600")
    assert_books_match_exchange(gateway, a)
    assert_books_match_exchange(gateway, b)
    assert not set(a.fills.values_list("trade_id", flat=True)) & set(
        b.fills.values_list("trade_id", flat=True)
    )
    # The fired stop keeps the market order it became, with its fill.
    stop = a.orders.get(purpose="SL")
    assert (stop.status, stop.filled_quantity, stop.average_price) == (
        "FILLED",
        Decimal("0.011"),
        Decimal("99600"),
    )
    assert stop.triggered_order_id and stop.fills.count() == 1
    assert a.orders.get(purpose="TP").status == "CANCELED"
    assert "-2011" not in scenario_market.stats()["rejections"]


def test_close_when_user_trades_fail_at_close_then_pnl_completed_later_and_entries_blocked(
    scenario_market: object, btc: Symbol, gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(daily_loss_limit_usd=Decimal("100"))
    a = position_open(symbol=btc, side="LONG", reason="A", gateway=gateway).position
    # userTrades answers 503 from now until the test ends the outage (longer than any retry).
    scenario_market.faults(kind="error", method="GET", path="/fapi/v1/userTrades", count=10_000)
    scenario_market.set_price("BTCUSDT", "99600")

    recorded = position_record_exchange_close(position=a, gateway=gateway)
    refused = position_open(symbol=btc, side="LONG", reason="B", gateway=gateway)
    still_waiting = positions_books_complete(gateway=gateway)

    assert recorded.status == "closed"
    a.refresh_from_db()
    assert (a.status, a.close_reason, a.awaiting_fills, a.realized_pnl) == (
        "CLOSED",
        "SL",
        True,
        None,
    )
    assert refused.status == "refused" and "not known yet" in refused.reason
    assert still_waiting == []
    assert Position.objects.filter(status="OPEN").count() == 0

    scenario_market.clear_faults()  # the outage ends
    completed = positions_books_complete(gateway=gateway)

    assert [p.pk for p in completed] == [a.pk]
    a.refresh_from_db()
    assert not a.awaiting_fills
    assert a.realized_pnl == Decimal("-4.4") - Decimal("0.55") - Decimal("0.5478")
    assert_books_match_exchange(gateway, a)
    assert position_open(symbol=btc, side="LONG", reason="B", gateway=gateway).ok


def test_fill_record_when_same_trade_twice_then_recorded_once(
    scenario_market: object, btc: Symbol, gateway: ExchangeGateway
) -> None:
    a = position_open(symbol=btc, side="LONG", reason="A", gateway=gateway).position
    entry = a.orders.get(purpose="ENTRY")
    trade = gateway.fetch_order_fills(symbol="BTCUSDT", order_id=entry.exchange_order_id)[0]

    first = fill_record(order=entry, trade=trade)
    second = fill_record(order=entry, trade=trade)

    assert first[0].pk == second[0].pk and second[1] is False
    assert Fill.objects.filter(trade_id=trade.trade_id).count() == 1


def test_fill_record_when_fee_paid_in_bnb_then_kept_in_bnb_and_converted_explicitly(
    scenario_market: object, btc: Symbol, gateway: ExchangeGateway
) -> None:
    a = position_open(symbol=btc, side="LONG", reason="A", gateway=gateway).position
    entry = a.orders.get(purpose="ENTRY")
    trade = gateway.fetch_order_fills(symbol="BTCUSDT", order_id=entry.exchange_order_id)[0]
    in_bnb = type(trade)(
        **{
            **vars(trade),
            "commission": Decimal("0.00057"),
            "trade_id": 999999,
            "commission_asset": "BNB",
        }
    )

    fill, _ = fill_record(order=entry, trade=in_bnb, usdt_rate=Decimal("964"))

    fill.refresh_from_db()
    assert (fill.commission, fill.commission_asset) == (Decimal("0.00057"), "BNB")
    assert (fill.commission_usdt_rate, fill.commission_usdt) == (
        Decimal("964"),
        Decimal("0.54948"),
    )


@pytest.mark.parametrize(
    ("exit_on_flat", "stop_status", "cancels"),
    [
        # Binance's algo-order documentation: the system expires the other exit; nothing to send.
        ("expire", Order.Status.EXPIRED, 0),
        # Observed with the older API: the other exit stays open and must be cancelled, once.
        ("keep", Order.Status.CANCELED, 1),
    ],
)
def test_close_when_take_profit_fired_then_stop_not_cancelled_again_and_status_as_exchange_says(
    scenario_market: object,
    btc: Symbol,
    gateway: ExchangeGateway,
    exit_on_flat: str,
    stop_status: str,
    cancels: int,
) -> None:
    scenario_market.set_options(exit_on_flat=exit_on_flat)
    a = position_open(symbol=btc, side="LONG", reason="A", gateway=gateway).position
    scenario_market.set_price("BTCUSDT", "100600")  # through the target at 100500

    outcome = position_close(position=a, reason="SIGNAL", gateway=gateway)

    assert outcome.status == CloseOutcome.CLOSED
    statuses = dict(a.orders.filter(is_conditional=True).values_list("purpose", "status"))
    assert statuses == {"TP": Order.Status.FILLED, "SL": stop_status}
    assert "-2011" not in scenario_market.stats()["rejections"]
    assert scenario_market.stats()["requests"].get("DELETE /fapi/v1/algoOrder", 0) == cancels
    assert gateway.fetch_open_conditional_orders(symbol="BTCUSDT") == []
    assert_books_match_exchange(gateway, a)
