"""The guard's reads at the lowest weight: per symbol while cheaper, all symbols beyond, the
same positions and orders either way, checked on the exchange's own weight count."""

from __future__ import annotations

import pytest

from tests.support.exchange import fast_gateway
from tests.support.factories import open_long
from trading.guard_reads import GuardReader, reads_weight

pytestmark = pytest.mark.django_db(transaction=True)


def _weight(paper) -> int:
    return int(paper.stats()["weight_1m"])


def _all_symbol_orders(gateway) -> set[str]:
    return {
        o.client_order_id
        for o in [*gateway.fetch_open_orders(), *gateway.fetch_open_conditional_orders()]
    }


def test_guard_reads_when_two_symbols_watched_then_per_symbol_reads_weigh_9_and_miss_nothing(
    btc_market, btc, unthrottled_gateway
):
    # Arrange: a protected long on BTCUSDT, ETHUSDT watched too.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    reader = GuardReader(fast_gateway)
    expected = _all_symbol_orders(unthrottled_gateway)

    # Act
    before = _weight(btc_market)
    reads = reader.snapshot(watched={"BTCUSDT", "ETHUSDT"})
    used = _weight(btc_market) - before
    reader.close()

    # Assert
    assert used == reads.weight == 9  # positions 5 + 2 symbols x (orders 1 + algo orders 1)
    assert set(reads.positions) == {"BTCUSDT"}
    assert {o.client_order_id for o in reads.orders["BTCUSDT"]} == expected
    assert len(expected) == 2 and position.orders.filter(purpose__in=("SL", "TP")).count() == 2


def test_guard_reads_when_position_on_unwatched_symbol_then_its_orders_read_too(
    btc_market, btc, unthrottled_gateway
):
    open_long(symbol=btc, gateway=unthrottled_gateway)
    reader = GuardReader(fast_gateway)

    reads = reader.snapshot(watched={"ETHUSDT"})
    reader.close()

    assert len(reads.orders["BTCUSDT"]) == 2
    assert reads.weight == 5 + 2 + 2


def test_reads_weight_when_many_symbols_then_all_symbol_reads_are_chosen():
    assert reads_weight(watched=2) == (9, True)
    assert reads_weight(watched=20) == (45, True)
    assert reads_weight(watched=39) == (83, True)
    assert reads_weight(watched=40) == (85, False)
    assert reads_weight(watched=50) == (85, False)
