"""The guard reads only what it needs: one conditional-order read per watched symbol, every
order of every symbol in a sweep every five minutes, the balance only when the post-trade check
needs it; and with fewer reads it still finds a position opened by hand and never mistakes a
stop firing between its reads for a missing exit. Weights are the exchange's own count."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.models import Lease
from monitoring.models import Alert
from paper.testing import PaperControl, PaperExchangeServer
from risk.models import RiskProfile
from tests.support.exchange import fast_gateway, open_algo_orders, pass_weight
from tests.support.factories import open_long
from trading import guard_reads
from trading.guard import SWEEP_LEASE_NAME, GuardReport, guard_pass
from trading.models import Order, Position, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
SYMBOLS = 50


def _guard() -> GuardReport:
    return guard_pass(gateway=fast_gateway())


def _requests(paper: PaperControl, key: str) -> int:
    return int(paper.stats()["requests"].get(key, 0))


def _sweep_due_now() -> None:
    """As if five minutes had passed since the last sweep."""
    Lease.objects.filter(name=SWEEP_LEASE_NAME).update(expires_at=timezone.now())


def _in_thread(run: Callable[[], GuardReport]) -> tuple[threading.Thread, list[GuardReport]]:
    reports: list[GuardReport] = []

    def target() -> None:
        try:
            reports.append(run())
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="guard-pass")
    thread.start()
    return thread, reports


def _fault_taken(paper: PaperControl) -> bool:
    return paper._call("GET", "faults")["faults"] == []


def _wait_until(condition: Callable[[], bool], *, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def fifty_symbols(defaults: None, settings: object) -> Iterator[PaperControl]:
    """A paper exchange of its own listing 50 symbols, all configured and enabled here."""
    server = PaperExchangeServer().start(port=0, feed="static", extra_symbols=SYMBOLS - 6)
    settings.EXCHANGE, settings.PAPER_EXCHANGE_URL = "paper", server.url
    template = Symbol.objects.get(name="ADAUSDT")
    for n in range(1, SYMBOLS - 6 + 1):
        clone = copy.copy(template)
        clone.pk = clone.id = None
        clone.name, clone.base_asset = f"SYN{n:03d}USDT", f"SYN{n:03d}"
        clone.save()
    Symbol.objects.update(enabled=True)
    try:
        yield PaperControl(server.url)
    finally:
        server.stop()


def test_guard_pass_when_50_symbols_configured_and_one_position_then_weight_6_per_pass(
    fifty_symbols: PaperControl,
) -> None:
    # Arrange: one protected position among fifty enabled symbols
    fifty_symbols.set_balance("USDT", "1833.33")
    open_long(symbol=Symbol.objects.get(name="BTCUSDT"), gateway=fast_gateway())

    # Act: the first pass sweeps (and reads the balance); the next ones are the steady state
    sweep_weight, sweep = pass_weight(fifty_symbols, _guard)
    steady = [pass_weight(fifty_symbols, _guard) for _ in range(3)]

    # Assert: positions 5 + BTCUSDT's conditional orders 1; the 49 other symbols cost nothing
    assert sweep.error == "" and sweep.requests == 4
    assert sweep_weight == 5 + 40 + 40 + 5
    assert [(weight, report.requests) for weight, report in steady] == [(5 + 1, 2)] * 3
    assert all(not r.reattached and not r.failed and r.positions == 1 for _, r in steady)


def test_orders_weight_when_watched_symbols_grow_then_all_symbol_read_from_40_on() -> None:
    assert [guard_reads.orders_weight(watched=n) for n in (0, 1, 2, 20, 39)] == [0, 1, 2, 20, 39]
    assert [guard_reads.orders_weight(watched=n) for n in (40, 50, 500)] == [40, 40, 40]
    assert guard_reads.orders_weight(watched=2, sweep=True) == 80
    assert len(guard_reads.order_reads(watched={"A", "B"}, sweep=False)) == 2
    assert len(guard_reads.order_reads(watched={f"S{n}" for n in range(45)}, sweep=False)) == 1


def test_guard_pass_when_position_opened_by_hand_on_never_traded_symbol_then_found_and_protected(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: our protected BTCUSDT long, past the first (sweeping) pass; then 0.1 ETH bought
    # by hand: ETHUSDT has no order and no position here, so no pass watches it
    open_long(symbol=btc, gateway=unthrottled_gateway)
    _guard()
    assert not Order.objects.filter(symbol__name="ETHUSDT").exists()
    unthrottled_gateway.create_market_order(
        symbol="ETHUSDT",
        side="BUY",
        quantity=Decimal("0.1"),
        client_order_id="by-hand-eth",
        reduce_only=False,
    )
    all_symbol_reads = _requests(btc_market, "GET /fapi/v1/openOrders")

    # Act
    found = _guard()
    after = _guard()

    # Assert: found by the all-symbol position read, adopted and protected in the same pass,
    # without a sweep (no regular-order read at all); watched from then on
    assert found.error == "" and found.adopted == ["ETHUSDT LONG 0.100 @ 3500"]
    assert sorted(found.reattached) == ["ETHUSDT SL @ 3489.50", "ETHUSDT TP @ 3517.50"]
    assert _requests(btc_market, "GET /fapi/v1/openOrders") == all_symbol_reads
    assert not after.reattached and not after.adopted and after.requests == 1 + 2
    types = sorted(o["orderType"] for o in open_algo_orders(btc_market, "ETHUSDT"))
    assert types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]


def test_guard_pass_when_stop_fires_during_per_symbol_read_then_nothing_placed_no_alert(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: a protected LONG (SL 99700), past the sweeping pass; its conditional-order read
    # is held back by the exchange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    _guard()
    placed = _requests(btc_market, "POST /fapi/v1/algoOrder")
    btc_market.faults(kind="latency", method="GET", path="/fapi/v1/openAlgoOrders", seconds=1.0)

    # Act: the stop fires while that read is held back
    thread, reports = _in_thread(_guard)
    _wait_until(lambda: _fault_taken(btc_market))
    btc_market.set_price("BTCUSDT", "99600")
    thread.join(timeout=30)
    later = _guard()

    # Assert: the symbol read flat (the position read came after the order read): no exit
    # placed, no alert; the close recorded as SL
    assert reports[0].error == "" and not reports[0].reattached and not later.reattached
    assert _requests(btc_market, "POST /fapi/v1/algoOrder") == placed
    assert not Alert.objects.filter(key__startswith="guard.").exists()
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == "SL"


def test_guard_pass_when_stop_fires_while_unwatched_symbol_is_read_then_not_adopted_nor_alerted(
    btc_market, unthrottled_gateway
):
    # Arrange: a position opened by hand with its own stop on a symbol nobody watches; the pass
    # learns of it from the position read, so it reads its orders after that read
    _guard()  # the sweeping pass, with nothing on the exchange
    unthrottled_gateway.create_market_order(
        symbol="ETHUSDT",
        side="BUY",
        quantity=Decimal("0.1"),
        client_order_id="by-hand-eth",
        reduce_only=False,
    )
    unthrottled_gateway.create_exit_order(
        symbol="ETHUSDT",
        side="SELL",
        kind="SL",
        stop_price=Decimal("3400"),
        client_order_id="by-hand-eth-sl",
    )
    placed = _requests(btc_market, "POST /fapi/v1/algoOrder")
    btc_market.faults(kind="latency", method="GET", path="/fapi/v1/openAlgoOrders", seconds=1.0)

    # Act: the hand-placed stop fires while ETHUSDT's order read is held back
    thread, reports = _in_thread(_guard)
    _wait_until(lambda: _fault_taken(btc_market))
    btc_market.set_price("ETHUSDT", "3390")
    thread.join(timeout=30)

    # Assert: its position read again after its orders: flat, so nothing adopted, placed or
    # alerted (read once, it would look like a naked position and get a second stop)
    assert btc_market.positions() == []
    assert reports[0].error == "" and not reports[0].adopted and not reports[0].unknown
    assert _requests(btc_market, "POST /fapi/v1/algoOrder") == placed
    assert not Position.objects.exists()
    assert not Alert.objects.filter(key__startswith="guard.").exists()


def test_guard_pass_when_our_order_left_on_symbol_linked_to_nothing_then_cancelled_by_sweep(
    btc_market, unthrottled_gateway
):
    # Arrange: past the first sweep, a stop of ours whose row is gone (a restored database) on
    # a symbol with nothing live here
    btc_market.set_options(close_without_position="accept")
    _guard()
    unthrottled_gateway.create_exit_order(
        symbol="BNBUSDT",
        side="SELL",
        kind="SL",
        stop_price=Decimal("900"),
        client_order_id="arena-999-sl-x",
    )

    # Act
    steady = _guard()
    _sweep_due_now()
    sweep = _guard()

    # Assert: not read by the steady pass (nothing points at BNBUSDT), cancelled by the sweep
    assert steady.cancelled == [] and steady.requests == 1
    assert sweep.cancelled == ["arena-999-sl-x"]
    assert open_algo_orders(btc_market, "BNBUSDT") == []


def test_guard_pass_when_risk_pct_lowered_in_admin_then_balance_read_and_excess_closed_at_once(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: 0.011 BTC (margin 550 of the allowed 30 % of 1833.33); the balance was read by
    # the first pass a moment ago, so only the rule change makes the next pass read it
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    _guard()
    assert _guard().requests == 2  # positions and BTCUSDT's conditional orders: no balance
    profile = RiskProfile.objects.get(is_active=True)
    profile.risk_pct = Decimal("15")
    profile.save()  # as the admin does

    # Act
    report = _guard()

    # Assert: allowed margin 275, so 0.005 of 0.011 closed
    position.refresh_from_db()
    assert report.error == ""
    assert _requests(btc_market, "GET /fapi/v2/account") >= 1
    assert position.status == Position.Status.OPEN and position.quantity == Decimal("0.006")


def test_guard_pass_when_position_opened_by_hand_with_its_own_exits_then_no_second_exits(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: past the sweeping pass, 0.1 ETH bought by hand with a stop and a target by hand
    open_long(symbol=btc, gateway=unthrottled_gateway)
    _guard()
    unthrottled_gateway.create_market_order(
        symbol="ETHUSDT",
        side="BUY",
        quantity=Decimal("0.1"),
        client_order_id="by-hand-eth",
        reduce_only=False,
    )
    for kind, price in (("SL", "3400"), ("TP", "3600")):
        unthrottled_gateway.create_exit_order(
            symbol="ETHUSDT",
            side="SELL",
            kind=kind,
            stop_price=Decimal(price),
            client_order_id=f"by-hand-eth-{kind}",
        )
    placed = _requests(btc_market, "POST /fapi/v1/algoOrder")

    # Act
    report = _guard()

    # Assert: its orders were read although nothing here pointed at ETHUSDT: adopted, and the
    # operator's exits count as its protection
    assert report.adopted == ["ETHUSDT LONG 0.100 @ 3500"]
    assert report.reattached == [] and report.failed == [] and report.error == ""
    assert _requests(btc_market, "POST /fapi/v1/algoOrder") == placed
    assert not Alert.objects.filter(key__startswith="guard.exit").exists()
    ids = sorted(o["clientAlgoId"] for o in open_algo_orders(btc_market, "ETHUSDT"))
    assert ids == ["by-hand-eth-SL", "by-hand-eth-TP"]
