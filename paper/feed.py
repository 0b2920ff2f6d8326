"""Price feeds: ``static`` (prices move only when told) and ``replay`` (1-minute candles).

The replay walks each candle open -> nearer extreme -> other extreme -> close, so a stop inside a
candle's range triggers. The open is a jump from the previous close (a gap fills at the open); the
moves inside a candle are continuous (a stop passed fills at its trigger price). Tests step the
replay with :meth:`ReplayFeed.step` instead of waiting for the clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from paper import funding
from paper.candles import MINUTE_MS, Candle
from paper.engine import Engine
from paper.market import Market
from paper.symbols import round_to_tick, symbols

logger = logging.getLogger(__name__)
HISTORY_CANDLES = 1000
# The replay's mark price follows the last price smoothed (this share of the gap closed per
# point) plus a basis, so it lags and differs from the last trade as Binance's does.
MARK_SMOOTHING = Decimal("0.35")
MARK_BASIS = Decimal("0.0002")


class StaticFeed:
    """Prices stay where the control API puts them; klines show shaped history plus live moves.

    The history is the bundled candle set, shifted to end a minute ago and scaled to the
    symbol's start price, so a strategy has something to read from the first request.
    """

    def __init__(self, engine: Engine, market: Market, candles: dict[str, list[Candle]]) -> None:
        self.engine = engine
        self.market = market
        self.candles = candles

    def start(self) -> None:
        now = self.market.clock()
        end = now - now % MINUTE_MS
        for name, rows in self.candles.items():
            tail = rows[-HISTORY_CANDLES:]
            if not tail or name not in self.engine.last:
                continue
            factor = self.engine.last[name] / tail[-1].close
            shift = end - MINUTE_MS * len(tail) - tail[0].open_time
            self.market.load_history(name, [_reshape(c, factor, shift, name) for c in tail])
        self.engine.listeners.append(lambda symbol, price: self.market.record(symbol, price))

    def stop(self) -> None:
        """Nothing runs in the background."""


def _reshape(c: Candle, factor: Decimal, shift: int, name: str) -> Candle:
    tick = symbols()[name].tick
    o, h, lo, cl = (round_to_tick(v * factor, tick) for v in (c.open, c.high, c.low, c.close))
    # Quote volumes scale with the prices, or the day's weighted average leaves its range.
    return replace(
        c,
        open_time=c.open_time + shift,
        close_time=c.close_time + shift,
        open=o,
        high=max(h, o, cl),
        low=min(lo, o, cl),
        close=cl,
        quote_volume=(c.quote_volume * factor).quantize(Decimal("0.01")),
        taker_buy_quote_volume=(c.taker_buy_quote_volume * factor).quantize(Decimal("0.01")),
    )


class ReplayFeed:
    """Plays candles at ``speed`` times real time; the first ``warmup`` are history already."""

    POINTS = 4

    def __init__(
        self,
        engine: Engine,
        market: Market,
        candles: dict[str, list[Candle]],
        *,
        speed: float = 1.0,
        warmup: int = 500,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.market = market
        self.candles = {k: v for k, v in candles.items() if k in engine.last and v}
        self.speed = speed
        self.clock = clock
        self.wall_clock = wall_clock
        length = min((len(v) for v in self.candles.values()), default=0)
        self.warmup = min(warmup, max(0, length - 1))
        self.index = self.warmup
        self.point = 0
        self.length = length
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._funding_at = 0

    @property
    def seconds_per_point(self) -> float:
        return 60.0 / self.speed / self.POINTS

    @property
    def finished(self) -> bool:
        return self.index >= self.length

    def market_time(self) -> int:
        """The replay's current time: the candle being played plus the walked part of it."""
        rows = next(iter(self.candles.values()), [])
        if not rows:
            return int(time.time() * 1000)
        candle = rows[min(self.index, self.length - 1)]
        return candle.open_time + self.point * MINUTE_MS // self.POINTS

    def prime(self) -> None:
        """Load the warm-up history and put prices at its last close."""
        for name, rows in self.candles.items():
            self.market.load_history(name, rows[: self.warmup])
            # Prices start where the history ends; the first step then plays the next open.
            start = rows[self.index - 1].close if self.index else rows[0].open
            with self.engine.lock:
                self.engine.last[name] = start
                self.engine.mark[name] = self.next_mark(name, start, start)
        self.market.clock = self.market_time
        self.market.serve_shift = self.serve_shift
        # Funding falls due every 8 hours of replayed time, not of the wall clock.
        self.engine.funding_by_clock = False
        self._funding_at = funding.boundary_at_or_before(self.market_time())

    @staticmethod
    def next_mark(name: str, mark: Decimal, last: Decimal) -> Decimal:
        """The mark after a move to ``last``: smoothed towards it, plus the basis."""
        smoothed = mark + (last * (1 + MARK_BASIS) - mark) * MARK_SMOOTHING
        return round_to_tick(smoothed, symbols()[name].tick)

    def serve_shift(self) -> int:
        """Milliseconds that relabel the candle being played as the current wall-clock minute.

        Replayed candles carry the times they were recorded (or generated) at; a client that
        checks freshness against its own clock must see them as live, as on Binance.
        """
        now = int(self.wall_clock() * 1000)
        rows = next(iter(self.candles.values()), [])
        if not rows:
            return 0
        current = rows[min(self.index, self.length - 1)].open_time
        return now - now % MINUTE_MS - current

    def step(self) -> bool:
        """Walk one point of the current candle on every symbol; False once the data ran out."""
        if self.finished:
            return False
        at = self.market_time()
        if funding.boundary_at_or_before(at) > self._funding_at:
            self._funding_at = funding.boundary_at_or_before(at)
            self.engine.settle_funding(self.engine.now())
        for name, rows in self.candles.items():
            candle = rows[self.index]
            price = candle.path()[self.point]
            mark = self.next_mark(name, self.engine.mark.get(name, price), price)
            if self.point == 0:
                self.engine.set_price(name, price, mark)
            else:
                self.engine.move_price(name, price, mark)
            self.market.record(name, price, at)
            if self.point == self.POINTS - 1:
                self.market.finish(name, candle)
        self.point += 1
        if self.point == self.POINTS:
            self.point = 0
            self.index += 1
        return True

    def start(self) -> None:
        self.prime()
        self._thread = threading.Thread(target=self._run, name="paper-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        due = self.clock()
        while not self._stop.is_set():
            due += self.seconds_per_point
            delay = due - self.clock()
            if delay > 0 and self._stop.wait(delay):
                return
            if not self.step():
                logger.info("replay finished after %s candles", self.length)
                return
