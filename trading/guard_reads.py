"""The guard's exchange reads at the lowest weight, issued concurrently.

Binance weighs an open-orders query, regular or conditional (algo), 1 with a symbol and 40
without; the position read is 5 and covers every symbol (a position may appear on a symbol we
never traded). A pass reads:

- the conditional orders of the symbols it watches, one query each while that costs less than
  the all-symbol query (fewer than 40 watched symbols), else the all-symbol query;
- no regular open orders: since Binance moved stop and take-profit orders to the algo service
  (``/fapi/v1/order`` refuses them with -4120, and so does the paper exchange), a regular order
  cannot protect a position, and the bot itself sends only market orders, which never rest;
- the sweep pass (see ``trading.guard.SWEEP_EVERY``) reads both lists for all symbols instead,
  for our orders left where the database links nothing live and the operator's own orders.

Reads go out together, each thread on its own clone of the pass's gateway (a gateway is used by
one thread at a time); their requests are counted on the pass's gateway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from exchange.gateway import ExchangeGateway, ExchangeOrder

ALL_SYMBOLS_ORDERS_WEIGHT = 40
ONE_SYMBOL_ORDERS_WEIGHT = 1
POSITIONS_WEIGHT = 5
# Threads of one pass's reads: each holds a gateway clone (a ccxt client, ~16 ms to build).
MAX_READ_THREADS = 8

Read = Callable[[ExchangeGateway], Any]


def per_symbol(*, watched: int) -> bool:
    """Whether per-symbol order reads cost less than one all-symbol read (at 40, equal weight:
    one request beats forty)."""
    return watched * ONE_SYMBOL_ORDERS_WEIGHT < ALL_SYMBOLS_ORDERS_WEIGHT


def orders_weight(*, watched: int, sweep: bool = False) -> int:
    """Binance's weight of one pass's order reads."""
    if sweep:
        return 2 * ALL_SYMBOLS_ORDERS_WEIGHT
    if per_symbol(watched=watched):
        return watched * ONE_SYMBOL_ORDERS_WEIGHT
    return ALL_SYMBOLS_ORDERS_WEIGHT


def order_reads(*, watched: set[str], sweep: bool) -> list[Read]:
    """The order reads of a pass (see the module docstring)."""
    if sweep:
        return [lambda g: g.fetch_open_orders(), lambda g: g.fetch_open_conditional_orders()]
    if not per_symbol(watched=len(watched)):
        return [lambda g: g.fetch_open_conditional_orders()]
    return [
        lambda g, s=symbol: g.fetch_open_conditional_orders(symbol=s) for symbol in sorted(watched)
    ]


def orders_read(gateway: ExchangeGateway, reads: list[Read]) -> list[ExchangeOrder]:
    """Run ``reads`` concurrently and return every order they found."""
    return [order for found in read_concurrently(gateway, reads) for order in found]


def read_concurrently(gateway: ExchangeGateway, reads: list[Read]) -> list:
    """Run each read on a clone of ``gateway``, at most ``MAX_READ_THREADS`` at once; the clones'
    request counts are added to ``gateway``'s. The first failure is raised once all finished."""
    if not reads:
        return []
    clones = [gateway.clone() for _ in range(min(len(reads), MAX_READ_THREADS))]
    results: list = [None] * len(reads)
    next_index = iter(range(len(reads)))
    take = threading.Lock()

    def work(clone: ExchangeGateway) -> None:
        try:
            while True:
                with take:
                    index = next(next_index, None)
                if index is None:
                    return
                try:
                    results[index] = reads[index](clone)
                except BaseException as exc:  # handed to the caller below
                    results[index] = exc
        finally:
            connection.close()  # this thread's own connection (request log rows)

    threads = [
        threading.Thread(target=work, args=(clone,), name=f"guard-read-{n}")
        for n, clone in enumerate(clones)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for clone in clones:
        gateway.request_count += clone.request_count
        gateway.weight_used = max(gateway.weight_used, clone.weight_used)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
