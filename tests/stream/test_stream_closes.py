"""The stream process records fills and closes as the exchange reports them, and after every
gap (dropped connection, lost event, expired key) a REST reconcile leaves the ledger exact."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from exchange.stream import StreamFill
from tests.support.exchange import cancel_exit
from tests.support.factories import open_long
from tests.support.stream import closed, ledger_matches_exchange, wait_for
from trading.locks import db_write_lock
from trading.models import Fill, Position, TradeEvent
from trading.stream import stream_fill_apply

pytestmark = pytest.mark.django_db(transaction=True)


def _close_events(position: Position) -> list[TradeEvent]:
    with db_write_lock:
        return list(TradeEvent.objects.filter(position=position, kind=TradeEvent.Kind.CLOSED))


def _assert_books_exact(position: Position, gateway) -> None:
    trades = gateway.fetch_fills(symbol=position.symbol.name, since=None)
    assert position.realized_pnl == sum(t.realized_pnl - t.commission for t in trades)
    ledger_matches_exchange(symbol=position.symbol.name, gateway=gateway)


def test_stream_when_stop_loss_fills_then_close_recorded_at_once_by_the_stream(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    running = start_stream()

    # Act
    started = time.monotonic()
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 2.0, "the close")
    elapsed = time.monotonic() - started

    # Assert: recorded by the stream, no guard pass ran; the books are the exchange's.
    assert [e.actor for e in _close_events(position)] == ["stream"]
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    assert position.exit_price == Decimal("99700")
    _assert_books_exact(position, unthrottled_gateway)
    # Counted once its event is done (the other exit is cancelled after the close is recorded).
    wait_for(lambda: running.runner.counters.closes_recorded == 1, 2.0, "the stream's count")
    assert elapsed < 1.0, f"close recorded {elapsed:.3f} s after the fill"


def test_stream_when_take_profit_fills_then_close_recorded_as_tp_with_exact_books(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    start_stream()

    # Act
    btc_market.set_price("BTCUSDT", "100600")
    wait_for(lambda: closed(position), 2.0, "the close")

    # Assert
    assert position.close_reason == Position.CloseReason.TAKE_PROFIT
    assert [e.actor for e in _close_events(position)] == ["stream"]
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_when_connection_dropped_and_stop_fills_in_the_gap_then_reconcile_records_it(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange: reconnection waits 1 s, long enough for the stop to fill while it is down.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    running = start_stream(backoff_initial=1.0)

    # Act
    btc_market.stream(action="drop")
    running.wait_disconnected()
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 5.0, "the close after reconnecting")
    wait_for(lambda: running.runner.counters.reconciles == 2, 2.0, "the reconcile to end")

    # Assert: no event told it; the reconcile after the gap recorded it, exactly.
    assert running.runner.counters.closes_recorded == 0
    assert running.runner.counters.reconcile_closes == 1
    assert running.runner.counters.connects == 2
    assert [e.actor for e in _close_events(position)] == ["stream"]
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_when_fill_events_lost_then_periodic_reconcile_records_the_close(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange: every event of the stop's fill is lost on the way.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    running = start_stream(reconcile_seconds=0.5)
    btc_market.stream(lose=100)

    # Act
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 5.0, "the close by the reconcile")
    wait_for(lambda: running.runner.counters.reconcile_closes, 2.0, "the reconcile to end")

    # Assert
    assert btc_market.stream()["events_lost"] >= 3  # algo triggered, order new, account, trade...
    assert running.runner.counters.closes_recorded == 0
    assert running.runner.counters.reconcile_closes == 1
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_when_listen_key_expires_then_new_key_and_gap_reconciled(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    running = start_stream(backoff_initial=1.0)

    # Act: the key expires (listenKeyExpired, connection closed); the stop fills meanwhile.
    btc_market.stream(action="expire")
    running.wait_disconnected()
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 5.0, "the close after reconnecting")
    wait_for(lambda: running.runner.counters.reconciles == 2, 2.0, "the reconcile to end")

    # Assert
    assert running.runner.counters.connects == 2
    assert running.runner.counters.reconcile_closes == 1
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_when_key_kept_alive_then_connection_outlives_the_key_validity(
    stream_paper, defaults, start_stream
):
    # Arrange: keys live 1 s after their last keep-alive; the stream renews every 0.3 s.
    stream_paper.stream(listen_key_validity_seconds=1)
    running = start_stream(keep_alive_seconds=0.3)

    # Act
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert running.runner.connected.is_set(), "the stream went down: key not kept alive"
        time.sleep(0.05)

    # Assert
    assert running.runner.counters.connects == 1
    assert stream_paper.stream()["connections"] == 1


def test_stream_when_connection_reaches_its_lifetime_then_closed_and_reconnected(
    stream_paper, defaults, start_stream
):
    # Arrange: Binance closes connections after 24 h; here after 0.5 s.
    stream_paper.stream(max_connection_seconds=0.5)
    running = start_stream()

    # Act
    wait_for(lambda: running.runner.counters.reconciles >= 2, 5.0, "a second connection")

    # Assert: closed by the exchange, connected again, and the gap reconciled.
    assert stream_paper.stream()["closed_by_lifetime"] >= 1
    assert running.runner.counters.connects >= 2


def test_stream_fill_apply_when_event_duplicated_then_one_fill_and_one_close(
    btc_market, btc, unthrottled_gateway, paper_server
):
    # Arrange: the stop fills; its fill as the stream reports it.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    exit_trade = unthrottled_gateway.fetch_fills(symbol="BTCUSDT", since=None)[-1]
    stop = position.orders.get(purpose="SL")
    event = StreamFill(
        fill=exit_trade,
        client_order_id=stop.client_order_id,
        order_status="FILLED",
        order_type="STOP_MARKET",
        reduce_only=True,
        event_time=exit_trade.time,
    )

    # Act
    first = stream_fill_apply(event=event, gateway=unthrottled_gateway)
    second = stream_fill_apply(event=event, gateway=unthrottled_gateway)

    # Assert
    position.refresh_from_db()
    assert first.recorded and first.closed is not None
    assert not second.recorded and second.closed is None
    assert Fill.objects.filter(trade_id=exit_trade.trade_id).count() == 1
    assert len(_close_events(position)) == 1
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_fill_apply_when_exit_fill_arrives_before_entry_fill_then_books_exact(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: the entry's own fill event comes late, after the stop's.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    entry_trade, exit_trade = unthrottled_gateway.fetch_fills(symbol="BTCUSDT", since=None)
    entry = position.orders.get(purpose="ENTRY")
    stop = position.orders.get(purpose="SL")
    Fill.objects.filter(position=position).delete()

    def event(trade, order, status):
        return StreamFill(
            fill=trade,
            client_order_id=order.client_order_id,
            order_status=status,
            order_type="MARKET",
            reduce_only=order.reduce_only,
            event_time=trade.time,
        )

    # Act
    stream_fill_apply(event=event(exit_trade, stop, "FILLED"), gateway=unthrottled_gateway)
    late = stream_fill_apply(event=event(entry_trade, entry, "FILLED"), gateway=unthrottled_gateway)

    # Assert
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED
    assert not late.recorded and late.closed is None
    _assert_books_exact(position, unthrottled_gateway)


def test_guard_when_stop_hit_while_stream_down_then_guard_records_the_close(
    btc_market, btc, unthrottled_gateway, guard, start_stream
):
    # Arrange: the stream ran and stopped (the process is down).
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    start_stream().stop()

    # Act
    btc_market.set_price("BTCUSDT", "99700")
    guard()

    # Assert
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    assert [e.actor for e in _close_events(position)] == ["guard"]
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_fill_apply_when_fired_exit_carries_unknown_client_id_then_close_recorded(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: the stop's market order reported under a client id we never gave (Binance may).
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    exit_trade = unthrottled_gateway.fetch_fills(symbol="BTCUSDT", since=None)[-1]
    event = StreamFill(
        fill=exit_trade,
        client_order_id="exchange-chosen-id",
        order_status="FILLED",
        order_type="STOP_MARKET",
        reduce_only=False,
        event_time=exit_trade.time,
        close_position=True,
    )

    # Act
    applied = stream_fill_apply(event=event, gateway=unthrottled_gateway)

    # Assert: closed as SL, the fill read over REST onto the stop's row.
    position.refresh_from_db()
    assert applied.closed is not None
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    assert Fill.objects.get(trade_id=exit_trade.trade_id).order.purpose == "SL"
    _assert_books_exact(position, unthrottled_gateway)


def test_stream_when_position_liquidated_then_close_recorded_as_liquidation(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange: no stop left on the exchange; the market collapses.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)
    start_stream()

    # Act
    btc_market.set_price("BTCUSDT", "50000")
    wait_for(lambda: closed(position), 3.0, "the liquidation's close")

    # Assert: every trade in the ledger (the PnL, with the clearance fee, is the books' own).
    assert position.close_reason == Position.CloseReason.LIQUIDATION
    assert [e.actor for e in _close_events(position)] == ["stream"]
    assert position.realized_pnl is not None and not position.awaiting_fills
    ledger_matches_exchange(symbol="BTCUSDT", gateway=unthrottled_gateway)
