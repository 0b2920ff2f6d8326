"""The close recorded from the stream's own events: no REST read the events answer, the other
exit cancelled after the close, ALGO_UPDATE telling what a stop became, and every event applied
twice or out of order changing nothing twice."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from exchange.stream import StreamAlgo, StreamFill
from tests.support.exchange import open_algo_orders
from tests.support.factories import open_long
from tests.support.stream import closed, ledger_matches_exchange, wait_for
from trading import fills
from trading.locks import db_write_lock
from trading.models import ExchangeRequest, Fill, Order, Position, TradeEvent
from trading.stream import stream_algo_apply, stream_fill_apply

pytestmark = pytest.mark.django_db(transaction=True)


def _requests_since(first_id: int) -> list[str]:
    with db_write_lock:
        return list(
            ExchangeRequest.objects.filter(id__gt=first_id)
            .order_by("id")
            .values_list("action", flat=True)
        )


def _last_request_id() -> int:
    with db_write_lock:
        return ExchangeRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _stop_fired(position: Position, gateway) -> tuple:
    """The stop's fill as the exchange reports it, and the regular order it became."""
    stop = position.orders.get(purpose=Order.Purpose.STOP_LOSS)
    exit_trade = gateway.fetch_fills(symbol=position.symbol.name, since=None)[-1]
    became = gateway.fetch_order(
        symbol=position.symbol.name, client_order_id=stop.client_order_id, conditional=True
    )
    return stop, exit_trade, became


def _fill_event(trade, *, client_order_id: str) -> StreamFill:
    return StreamFill(
        fill=trade,
        client_order_id=client_order_id,
        order_status="FILLED",
        order_type="STOP_MARKET",
        reduce_only=True,
        event_time=trade.time,
        close_position=True,
        order_filled_quantity=trade.quantity,
        order_average_price=trade.price,
    )


def _algo_event(stop: Order, *, status: str, actual_order_id: str) -> StreamAlgo:
    return StreamAlgo(
        symbol=stop.symbol.name,
        client_algo_id=stop.client_order_id,
        algo_id=stop.exchange_order_id,
        status=status,
        actual_order_id=actual_order_id,
        event_time=stop.created_at,
    )


def test_stream_when_stop_fills_then_close_recorded_without_any_read_and_tp_cancelled_after(
    btc_market, btc, unthrottled_gateway, start_stream, paper
):
    # Arrange: the stream runs before the entry, as in production (the entry's fill is in the
    # ledger from its own event); no guard runs.
    running = start_stream()
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    wait_for(lambda: Fill.objects.filter(position=position).count() == 1, 2.0, "the entry's fill")
    before = _last_request_id()

    # Act
    started = time.monotonic()
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 1.0, "the close")
    elapsed = time.monotonic() - started
    wait_for(lambda: running.runner.counters.closes_recorded == 1, 2.0, "the event's end")

    # Assert: recorded by the stream from the events alone; its one request is the take-profit's
    # cancel, and the exchange holds no exit of the position any more.
    with db_write_lock:
        assert list(
            TradeEvent.objects.filter(position=position, kind="CLOSED").values_list(
                "actor", flat=True
            )
        ) == ["stream"]
        assert position.close_reason == Position.CloseReason.STOP_LOSS
        assert position.realized_pnl is not None and not position.awaiting_fills
    assert _requests_since(before) == ["cancel_order"]
    assert open_algo_orders(paper, "BTCUSDT") == []
    with db_write_lock:
        statuses = dict(position.orders.values_list("purpose", "status"))
    assert statuses == {"ENTRY": "FILLED", "SL": "FILLED", "TP": "CANCELED"}
    trades = unthrottled_gateway.fetch_fills(symbol="BTCUSDT", since=None)
    assert position.realized_pnl == sum(t.realized_pnl - t.commission for t in trades)
    ledger_matches_exchange(symbol="BTCUSDT", gateway=unthrottled_gateway)
    assert elapsed < 1.0, f"close recorded {elapsed:.3f} s after the fill"


def test_stream_when_stop_triggers_then_algo_update_stores_the_order_it_became(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange
    running = start_stream()
    position = open_long(symbol=btc, gateway=unthrottled_gateway)

    # Act
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 2.0, "the close")
    wait_for(lambda: running.runner.counters.algo_updates >= 1, 2.0, "an algo update")

    # Assert: the stop row names the regular order the exchange says it became.
    stop, exit_trade, became = _stop_fired(position, unthrottled_gateway)
    stop.refresh_from_db()
    assert became is not None and became.actual_order_id
    assert stop.triggered_order_id == became.actual_order_id == exit_trade.order_id
    assert stop.status == Order.Status.FILLED
    assert Fill.objects.get(trade_id=exit_trade.trade_id).order_id == stop.id


def test_stream_algo_apply_when_triggered_then_fill_with_foreign_client_id_closes_without_lookup(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: the stop fired; its fill carries a client id we never gave (Binance may), and the
    # entry's fill is in the ledger (as the stream or its gap reconcile leaves it).
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    stop, exit_trade, became = _stop_fired(position, unthrottled_gateway)
    fills.position_finished_fills_record(position=position, gateway=unthrottled_gateway)
    requests = unthrottled_gateway.request_count

    # Act: ALGO_UPDATE TRIGGERED, then the fill of the order it became.
    changed = stream_algo_apply(
        event=_algo_event(stop, status="TRIGGERED", actual_order_id=became.actual_order_id)
    )
    applied = stream_fill_apply(
        event=_fill_event(exit_trade, client_order_id="exchange-chosen-id"),
        gateway=unthrottled_gateway,
    )

    # Assert: the fill found the stop by the order it became; the close needed one request,
    # the take-profit's cancel.
    position.refresh_from_db()
    assert changed
    assert applied.recorded and applied.closed is not None
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    assert Fill.objects.get(trade_id=exit_trade.trade_id).order_id == stop.id
    assert unthrottled_gateway.request_count - requests == 1
    ledger_matches_exchange(symbol="BTCUSDT", gateway=unthrottled_gateway)


def test_stream_events_when_replayed_twice_and_reversed_then_nothing_changes_twice(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: the whole close, applied once in order.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    stop, exit_trade, became = _stop_fired(position, unthrottled_gateway)
    fills.position_finished_fills_record(position=position, gateway=unthrottled_gateway)
    events = [
        _algo_event(stop, status="TRIGGERED", actual_order_id=became.actual_order_id),
        _fill_event(exit_trade, client_order_id=stop.client_order_id),
        _algo_event(stop, status="FINISHED", actual_order_id=became.actual_order_id),
    ]
    for event in events:
        _apply(event, unthrottled_gateway)
    position.refresh_from_db()
    before = _books_state(position)

    # Act: every event again, then in reverse order, then a late CANCELED for the fired stop.
    for event in events + events[::-1]:
        _apply(event, unthrottled_gateway)
    late = stream_algo_apply(event=_algo_event(stop, status="CANCELED", actual_order_id=""))

    # Assert
    position.refresh_from_db()
    assert not late
    assert _books_state(position) == before
    assert before["closes"] == 1 and before["fills"] == 2
    assert before["orders"]["SL"] == ("FILLED", became.actual_order_id, Decimal("0.011"))
    ledger_matches_exchange(symbol="BTCUSDT", gateway=unthrottled_gateway)


def _apply(event, gateway) -> None:
    if isinstance(event, StreamAlgo):
        stream_algo_apply(event=event)
    else:
        stream_fill_apply(event=event, gateway=gateway)


def _books_state(position: Position) -> dict:
    return {
        "status": position.status,
        "pnl": position.realized_pnl,
        "exit_price": position.exit_price,
        "fills": Fill.objects.filter(position=position).count(),
        "closes": TradeEvent.objects.filter(position=position, kind="CLOSED").count(),
        "orders": {
            o.purpose: (o.status, o.triggered_order_id, o.filled_quantity)
            for o in position.orders.all()
        },
    }
