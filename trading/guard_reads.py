"""The guard's exchange reads at the lowest weight, issued concurrently.

Binance weighs an open-orders query 1 with a symbol and 40 without. The guard needs every
position (all symbols at once, weight 5: a position may appear on a symbol we never traded) and
the open orders of the symbols it watches (its open positions, and symbols where it has exits
recorded). Per-symbol reads are cheaper until about 40 watched symbols; above that, the two
all-symbol reads are. All reads of a pass are sent at once, each on its own gateway (a gateway
is used by one thread at a time).

Not yet called by the guard: ``guard_reads_snapshot`` returns what ``exchange_snapshot`` does,
for the guard to switch to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from exchange.gateway import ExchangeGateway, ExchangeOrder, ExchangePosition

ALL_SYMBOLS_ORDERS_WEIGHT = 40
ONE_SYMBOL_ORDERS_WEIGHT = 1
POSITIONS_WEIGHT = 5


@dataclass(frozen=True)
class GuardReads:
    positions: dict[str, ExchangePosition]
    orders: dict[str, list[ExchangeOrder]]
    weight: int  # Binance's weight of these reads

    @property
    def per_symbol(self) -> bool:
        return self.weight < POSITIONS_WEIGHT + 2 * ALL_SYMBOLS_ORDERS_WEIGHT


def reads_weight(*, watched: int) -> tuple[int, bool]:
    """(weight, per-symbol) of one pass watching ``watched`` symbols."""
    per_symbol = 2 * ONE_SYMBOL_ORDERS_WEIGHT * watched
    all_symbols = 2 * ALL_SYMBOLS_ORDERS_WEIGHT
    if per_symbol < all_symbols:
        return POSITIONS_WEIGHT + per_symbol, True
    return POSITIONS_WEIGHT + all_symbols, False


class GuardReader:
    """Reads for one guard process; keeps a gateway per concurrent read between passes."""

    def __init__(self, gateway_factory: Callable[[], ExchangeGateway], *, threads: int = 8):
        self._factory = gateway_factory
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="guard-read")
        self._free: list[ExchangeGateway] = []

    def _with_gateway(self, read: Callable[[ExchangeGateway], object]) -> object:
        gateway = self._free.pop() if self._free else self._factory()
        try:
            return read(gateway)
        finally:
            self._free.append(gateway)

    def snapshot(self, *, watched: set[str]) -> GuardReads:
        """Every position, and the open orders (regular and algo) of ``watched`` symbols plus
        any symbol holding a position; all reads concurrent."""
        weight, per_symbol = reads_weight(watched=len(watched))

        def submit(read: Callable[[ExchangeGateway], object]):
            return self._pool.submit(self._with_gateway, read)

        positions_future = submit(lambda g: g.fetch_positions())
        if per_symbol:
            order_futures = [
                submit(lambda g, s=symbol, algo=algo: _orders(g, symbol=s, algo=algo))
                for symbol in sorted(watched)
                for algo in (False, True)
            ]
        else:
            order_futures = [
                submit(lambda g, algo=algo: _orders(g, symbol=None, algo=algo))
                for algo in (False, True)
            ]
        positions = {p.symbol: p for p in positions_future.result()}
        found: list[ExchangeOrder] = [o for f in order_futures for o in f.result()]
        if per_symbol:
            # A position on a symbol we do not watch (opened by hand): its orders too.
            extra = sorted(set(positions) - watched)
            extra_futures = [
                submit(lambda g, s=symbol, algo=algo: _orders(g, symbol=s, algo=algo))
                for symbol in extra
                for algo in (False, True)
            ]
            found += [o for f in extra_futures for o in f.result()]
            weight += 2 * ONE_SYMBOL_ORDERS_WEIGHT * len(extra)
        orders: dict[str, list[ExchangeOrder]] = defaultdict(list)
        for order in found:
            orders[order.symbol].append(order)
        return GuardReads(positions=positions, orders=dict(orders), weight=weight)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _orders(gateway: ExchangeGateway, *, symbol: str | None, algo: bool) -> list[ExchangeOrder]:
    if algo:
        return gateway.fetch_open_conditional_orders(symbol=symbol)
    return gateway.fetch_open_orders(symbol=symbol)
