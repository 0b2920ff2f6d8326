"""Market data endpoints: klines, 24h tickers, price tickers and the premium index.

A :class:`Market` keeps each symbol's 1-minute candles: history loaded at start plus the candle the
feed is building now. Longer intervals are aggregated from the 1-minute ones, as Binance's are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from paper.candles import MINUTE_MS, Candle
from paper.engine import Engine
from paper.errors import reject
from paper.params import Params
from paper.records import ZERO
from paper.symbols import symbols

INTERVALS = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}


DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
MAX_PUBLIC_TRADES = 1000


@dataclass(frozen=True)
class _PublicTrade:
    trade_id: int
    price: Decimal
    qty: Decimal
    time: int
    buyer_maker: bool


@dataclass
class _Live:
    """The candle being built from price updates."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


class Market:
    """Candles and tickers per symbol, fed by price updates with a market timestamp."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.history: dict[str, list[Candle]] = {name: [] for name in symbols()}
        self.live: dict[str, _Live | None] = dict.fromkeys(symbols())
        self.clock = lambda: int(time.time() * 1000)
        # Milliseconds added to candle times when served: the replay relabels its recorded
        # candles so the one being played is the current wall-clock minute, as on a live venue.
        self.serve_shift: Callable[[], int] = lambda: 0
        self.public_trades: dict[str, list[_PublicTrade]] = {}
        self.trade_ids = 0
        self.book_updates = 0

    def load_history(self, symbol: str, candles: list[Candle]) -> None:
        with self.lock:
            self.history[symbol] = list(candles)
            self.live[symbol] = None

    def record(self, symbol: str, price: Decimal, at_ms: int | None = None) -> None:
        """Add a traded price at ``at_ms`` (market time) to the candle of that minute."""
        at = self.clock() if at_ms is None else at_ms
        minute = at - at % MINUTE_MS
        previous = self.public_trades.get(symbol)
        falling = bool(previous) and previous[-1].price > price
        self.record_trade(symbol, price, at, buyer_maker=falling)
        with self.lock:
            live = self.live[symbol]
            if live is not None and live.open_time != minute:
                self.history[symbol].append(_close(live))
                live = None
            if live is None:
                self.live[symbol] = _Live(minute, price, price, price, price)
                return
            live.high = max(live.high, price)
            live.low = min(live.low, price)
            live.close = price

    def finish(self, symbol: str, candle: Candle) -> None:
        """Replace the candle being built with the finished one (the replay's real row)."""
        with self.lock:
            self.live[symbol] = None
            rows = self.history[symbol]
            if rows and rows[-1].open_time == candle.open_time:
                rows[-1] = candle
            else:
                rows.append(candle)

    def candles(self, symbol: str) -> list[Candle]:
        with self.lock:
            rows = list(self.history[symbol])
            live = self.live[symbol]
        if live is not None:
            rows.append(_close(live))
        return _fill_quiet_minutes(rows, self.clock())

    # ------------------------------------------------------------------ endpoints
    def klines(self, p: Params) -> list[list[object]]:
        sym = p.symbol()
        assert sym is not None
        interval = p.required("interval")
        if interval not in INTERVALS:
            raise reject(-1120)
        limit = p.integer("limit", 500) or 500
        if not 1 <= limit <= 1500:
            raise reject(-1130, "limit")
        start = p.integer("startTime")
        end = p.integer("endTime")
        shift = self.serve_shift()
        rows = _aggregate(self.candles(sym.name), INTERVALS[interval])
        if start is not None:
            rows = [c for c in rows if c.open_time + shift >= start]
        if end is not None:
            rows = [c for c in rows if c.open_time + shift <= end]
        rows = rows[:limit] if start is not None else rows[-limit:]
        if shift:
            rows = [
                replace(c, open_time=c.open_time + shift, close_time=c.close_time + shift)
                for c in rows
            ]
        return [c.to_binance() for c in rows]

    def _ticker(self, name: str) -> dict[str, Any]:
        sym = symbols()[name]
        rows = self.candles(name)[-1440:]
        last = self.engine.last[name]
        now = self.clock()
        open_ = rows[0].open if rows else last
        high = max([c.high for c in rows] + [last])
        low = min([c.low for c in rows] + [last])
        volume = sum((c.volume for c in rows), ZERO)
        quote = sum((c.quote_volume for c in rows), ZERO)
        change = last - open_
        average = quote / volume if volume else last
        # Rounding of volumes must not put the average outside the day's range.
        average = min(max(average, low), high)
        return {
            "symbol": name,
            "priceChange": sym.fmt_price(change),
            "priceChangePercent": f"{(change / open_ * 100 if open_ else ZERO):.3f}",
            "weightedAvgPrice": sym.fmt_price(average),
            "lastPrice": sym.fmt_price(last),
            "lastQty": sym.fmt_qty(sym.min_qty),
            "openPrice": sym.fmt_price(open_),
            "highPrice": sym.fmt_price(high),
            "lowPrice": sym.fmt_price(low),
            "volume": sym.fmt_qty(volume),
            "quoteVolume": f"{quote:.2f}",
            "openTime": rows[0].open_time if rows else now - 86_400_000,
            "closeTime": now,
            "firstId": 1,
            "lastId": max(1, sum(c.count for c in rows)),
            "count": sum(c.count for c in rows),
        }

    def ticker_24h(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        with self.engine.lock:
            if sym is not None:
                return self._ticker(sym.name)
            return [self._ticker(name) for name in symbols()]

    def ticker_price(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        now = self.clock()
        names = [sym.name] if sym else list(symbols())
        rows = [
            {"symbol": n, "price": symbols()[n].fmt_price(self.engine.last[n]), "time": now}
            for n in names
        ]
        return rows[0] if sym else rows

    def book_ticker(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        now = self.clock()
        names = [sym.name] if sym else list(symbols())
        rows = []
        for n in names:
            s = symbols()[n]
            last = self.engine.last[n]
            rows.append(
                {
                    "symbol": n,
                    "bidPrice": s.fmt_price(last),
                    "bidQty": s.fmt_qty(s.max_qty),
                    "askPrice": s.fmt_price(last + s.tick),
                    "askQty": s.fmt_qty(s.max_qty),
                    "time": now,
                }
            )
        return rows[0] if sym else rows

    # ------------------------------------------------------------------ book and trades
    def depth(self, p: Params) -> dict[str, Any]:
        """``GET /fapi/v1/depth``: the book the matching engine fills market orders from."""
        sym = p.symbol()
        assert sym is not None
        limit = p.integer("limit", 500) or 500
        if limit not in DEPTH_LIMITS:
            raise reject(-1130, "limit")
        with self.engine.lock:
            last = self.engine.last[sym.name]
            level_qty, step = self.engine.book_level(sym, last)
        bids = []
        asks = []
        for level in range(limit):
            bid = last - step * level
            if bid > 0:
                bids.append([sym.fmt_price(bid), sym.fmt_qty(level_qty)])
            asks.append([sym.fmt_price(last + sym.tick + step * level), sym.fmt_qty(level_qty)])
        now = self.clock()
        with self.lock:
            self.book_updates += 1
            update_id = self.book_updates
        return {"lastUpdateId": update_id, "E": now, "T": now, "bids": bids, "asks": asks}

    def record_trade(self, symbol: str, price: Decimal, at: int, buyer_maker: bool) -> None:
        """Remember a public trade (a price the feed or a fill printed)."""
        sym = symbols()[symbol]
        with self.lock:
            rows = self.public_trades.setdefault(symbol, [])
            self.trade_ids += 1
            rows.append(_PublicTrade(self.trade_ids, price, sym.min_qty, at, buyer_maker))
            del rows[:-MAX_PUBLIC_TRADES]

    def _public(self, symbol: str) -> list[_PublicTrade]:
        with self.lock:
            rows = list(self.public_trades.get(symbol, []))
        if rows:
            return rows
        # Nothing printed yet: the last price is the one trade there is.
        sym = symbols()[symbol]
        return [_PublicTrade(0, self.engine.last[symbol], sym.min_qty, self.clock(), False)]

    def trades(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/trades``: the most recent public trades, oldest first."""
        sym = p.symbol()
        assert sym is not None
        limit = p.integer("limit", 500) or 500
        if not 1 <= limit <= 1000:
            raise reject(-1130, "limit")
        return [
            {
                "id": t.trade_id,
                "price": sym.fmt_price(t.price),
                "qty": sym.fmt_qty(t.qty),
                "quoteQty": f"{t.price * t.qty:f}",
                "time": t.time,
                "isBuyerMaker": t.buyer_maker,
            }
            for t in self._public(sym.name)[-limit:]
        ]

    def agg_trades(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/aggTrades``: one aggregate per public trade, with Binance's filters."""
        sym = p.symbol()
        assert sym is not None
        limit = p.integer("limit", 500) or 500
        if not 1 <= limit <= 1000:
            raise reject(-1130, "limit")
        from_id = p.integer("fromId")
        start = p.integer("startTime")
        end = p.integer("endTime")
        if start is not None and end is not None and end - start > 3_600_000:
            raise reject(-1127, 1)
        rows = [
            t
            for t in self._public(sym.name)
            if (from_id is None or t.trade_id >= from_id)
            and (start is None or t.time >= start)
            and (end is None or t.time <= end)
        ]
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
        return [
            {
                "a": t.trade_id,
                "p": sym.fmt_price(t.price),
                "q": sym.fmt_qty(t.qty),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.time,
                "m": t.buyer_maker,
            }
            for t in rows
        ]

    def premium_index(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        now = self.clock()
        names = [sym.name] if sym else list(symbols())
        rows = []
        for n in names:
            mark = self.engine.mark[n]
            rows.append(
                {
                    "symbol": n,
                    "markPrice": f"{mark:.8f}",
                    "indexPrice": f"{mark:.8f}",
                    "estimatedSettlePrice": f"{mark:.8f}",
                    "lastFundingRate": f"{self.engine.funding_rates[n]:.8f}",
                    "interestRate": "0.00010000",
                    "nextFundingTime": self.engine.next_funding_time(),
                    "time": now,
                }
            )
        return rows[0] if sym else rows


def _close(live: _Live) -> Candle:
    return Candle(
        open_time=live.open_time,
        open=live.open,
        high=live.high,
        low=live.low,
        close=live.close,
        volume=ZERO,
        close_time=live.open_time + MINUTE_MS - 1,
        quote_volume=ZERO,
        count=0,
        taker_buy_volume=ZERO,
        taker_buy_quote_volume=ZERO,
    )


def _aggregate(rows: list[Candle], minutes: int) -> list[Candle]:
    if minutes == 1:
        return rows
    size = minutes * MINUTE_MS
    out: list[Candle] = []
    for c in rows:
        bucket = c.open_time - c.open_time % size
        if out and out[-1].open_time == bucket:
            prev = out[-1]
            out[-1] = replace(
                prev,
                high=max(prev.high, c.high),
                low=min(prev.low, c.low),
                close=c.close,
                volume=prev.volume + c.volume,
                close_time=bucket + size - 1,
                quote_volume=prev.quote_volume + c.quote_volume,
                count=prev.count + c.count,
                taker_buy_volume=prev.taker_buy_volume + c.taker_buy_volume,
                taker_buy_quote_volume=prev.taker_buy_quote_volume + c.taker_buy_quote_volume,
            )
        else:
            out.append(replace(c, open_time=bucket, close_time=bucket + size - 1))
    return out


MAX_QUIET_FILL = 1500  # the most candles one klines request can return


def _fill_quiet_minutes(rows: list[Candle], now_ms: int) -> list[Candle]:
    """Add flat, zero-volume candles for finished minutes without a trade.

    Binance publishes a candle for every minute whether or not anything traded; without this
    a static price would look like a feed that stopped.
    """
    if not rows:
        return rows
    current = now_ms - now_ms % MINUTE_MS - MINUTE_MS  # the last finished minute
    last = rows[-1]
    missing = (current - last.open_time) // MINUTE_MS
    if missing <= 0:
        return rows
    first = current - (min(missing, MAX_QUIET_FILL) - 1) * MINUTE_MS
    price = last.close
    quiet = [
        Candle(
            open_time=t,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=ZERO,
            close_time=t + MINUTE_MS - 1,
            quote_volume=ZERO,
            count=0,
            taker_buy_volume=ZERO,
            taker_buy_quote_volume=ZERO,
        )
        for t in range(first, current + 1, MINUTE_MS)
    ]
    return rows + quiet
