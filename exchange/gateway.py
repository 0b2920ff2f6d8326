"""The one door to the exchange: wraps ccxt's binanceusdm, translates its errors, hands every
request to the request log it was given (it persists nothing itself).

Every method performs a fixed, documented number of requests, retries only temporary errors
through the one retry policy (``exchange.retry``), raises only ``core.errors`` exceptions, and
returns the dataclasses below with ``Decimal`` for every price, quantity and amount.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

import ccxt
from django.utils import timezone

from core.errors import (
    AuthenticationFailed,
    ClockSkew,
    OperatorActionRequired,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    TemporaryError,
)
from core.errors import ExchangeError as ArenaExchangeError
from exchange.retry import RetryPolicy, call_with_retry, default_retry_policy

logger = logging.getLogger(__name__)

ACCOUNT_MODE_MAX_AGE = 300.0
# When this process last saw each account (by API root) in one-way, single-asset mode.
_account_mode_checked: dict[str, float] = {}


@dataclass(frozen=True)
class AccountBalance:
    """USDT-M futures account in USDT."""

    wallet: Decimal  # totalWalletBalance
    equity: Decimal  # totalMarginBalance = wallet + unrealized PnL
    available: Decimal  # availableBalance


@dataclass(frozen=True)
class ExchangePosition:
    """A non-zero position on the exchange (one-way mode)."""

    symbol: str  # exchange id, e.g. BTCUSDT
    side: str  # LONG or SHORT
    quantity: Decimal  # always positive
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int
    margin_type: str  # ISOLATED or CROSSED
    initial_margin: Decimal


@dataclass(frozen=True)
class SymbolState:
    """One symbol as positionRisk v2 reports it, flat or not: what an entry needs to know."""

    symbol: str
    position: ExchangePosition | None  # None when flat
    mark_price: Decimal
    leverage: int
    margin_type: str  # ISOLATED or CROSSED


@dataclass(frozen=True)
class ExchangeOrder:
    """An order or algo (conditional) order as the exchange reports it."""

    symbol: str
    client_order_id: str
    exchange_order_id: str  # orderId, or algoId for conditional orders
    is_conditional: bool
    order_type: str  # MARKET, LIMIT, STOP_MARKET, TAKE_PROFIT_MARKET, ...
    side: str  # BUY or SELL
    status: str  # NEW, FILLED, CANCELED, EXPIRED, TRIGGERED, FINISHED, ...
    quantity: Decimal  # 0 for closePosition orders
    filled_quantity: Decimal
    average_price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    close_position: bool
    # For a triggered conditional order: the id of the market order it became (its fills).
    actual_order_id: str = ""

    @property
    def our_status(self) -> str:
        """``status`` in our words (``order_status_parse``)."""
        return order_status_parse(self.status)


class OrderState(StrEnum):
    """An exchange order's status in our words; the same values as ``trading``'s
    ``Order.Status`` (a test keeps them equal), which adds the states before an answer."""

    OPEN = "OPEN"
    FILLED = "FILLED"
    TRIGGERED = "TRIGGERED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


# Every order status the exchange reports, in ours: Binance's regular orders (status), its algo
# orders (algoStatus) and ccxt's unified statuses. Read here and nowhere else.
_ORDER_STATUSES = {
    # Working: on the book, or a conditional order waiting for (or being sent at) its trigger.
    "NEW": OrderState.OPEN,
    "PARTIALLY_FILLED": OrderState.OPEN,
    "TRIGGERING": OrderState.OPEN,
    "NEW_INSURANCE": OrderState.OPEN,  # a liquidation order taken by the insurance fund
    "NEW_ADL": OrderState.OPEN,  # a liquidation order matched by auto-deleveraging
    "open": OrderState.OPEN,
    # Done.
    "FILLED": OrderState.FILLED,
    "closed": OrderState.FILLED,
    # A conditional order fired: it became a market order (actualOrderId), whose fills are its own.
    "TRIGGERED": OrderState.TRIGGERED,
    "FINISHED": OrderState.TRIGGERED,
    "CANCELED": OrderState.CANCELED,
    "canceled": OrderState.CANCELED,
    "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED,  # expired by self-trade prevention
    "expired": OrderState.EXPIRED,
    "REJECTED": OrderState.REJECTED,
    "rejected": OrderState.REJECTED,
}


def order_status_parse(status: str) -> str:
    """Our status for an order status the exchange reports; UNKNOWN for one we do not know, so
    it is looked up again rather than taken for finished or working."""
    return _ORDER_STATUSES.get(status, OrderState.UNKNOWN)


@dataclass(frozen=True)
class Fill:
    """One trade of this account (userTrades), with Binance's realized PnL and fee."""

    symbol: str
    order_id: str
    side: str
    price: Decimal
    quantity: Decimal
    realized_pnl: Decimal
    commission: Decimal
    time: datetime
    trade_id: int = 0
    commission_asset: str = "USDT"
    maker: bool = False


@dataclass(frozen=True)
class IncomeEntry:
    """One entry of the account's income history (GET /fapi/v1/income)."""

    symbol: str  # empty for account-wide entries (transfers)
    income_type: str  # REALIZED_PNL, COMMISSION, FUNDING_FEE, TRANSFER, INSURANCE_CLEAR, ...
    amount: Decimal  # signed: a paid fee is negative
    asset: str
    time: datetime
    tran_id: str
    trade_id: str  # the trade the entry belongs to, when it belongs to one


# Client order ids the exchange gives the orders it places itself (Binance): liquidation,
# auto-deleveraging, delisting settlement.
EXCHANGE_CLOSE_PREFIXES = ("autoclose-", "adl_autoclose", "settlement_autoclose-")
INCOME_PAGE = 1000


@dataclass(frozen=True)
class Candle:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's filters as read from exchangeInfo + leverageBracket (for sync_symbols)."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int
    max_leverage: int


# Binance allows 2,400 weight a minute per IP; the budget stays below it (settings override).
DEFAULT_WEIGHT_BUDGET_1M = 2000


class RequestLog(Protocol):
    """Where the gateway records each request and finds the wait the exchange asked for.

    The gateway persists nothing itself; the trading app hands in its database log
    (``trading.request_log.DatabaseRequestLog``), so every worker of every process honours one
    backoff.
    """

    def record(
        self,
        *,
        action: str,
        symbol: str,
        client_order_id: str,
        latency_ms: int,
        error: ArenaExchangeError | None,
        retry_until: datetime | None,
    ) -> None: ...

    def backoff_until(self) -> datetime:
        """The latest wait not over yet; the epoch when none."""
        ...

    def backoff_lift(self) -> None: ...


class UnrecordedRequests:
    """A request log that keeps nothing (scripts and measurements outside the bot)."""

    def record(self, **kwargs: Any) -> None:
        return None

    def backoff_until(self) -> datetime:
        return EPOCH

    def backoff_lift(self) -> None:
        return None


class ExchangeGateway:
    """Binance USDT-M futures through ccxt. Build it with ``exchange_gateway()``.

    Reads (one request each unless noted): ``fetch_balance() -> AccountBalance``,
    ``fetch_positions() -> list[ExchangePosition]`` (all symbols, non-zero only),
    ``fetch_open_orders() -> list[ExchangeOrder]`` (regular orders, all symbols),
    ``fetch_open_conditional_orders() -> list[ExchangeOrder]`` (algo orders, all symbols),
    ``fetch_order(*, symbol, client_order_id, conditional) -> ExchangeOrder | None`` (direct
    lookup by client id; None when the exchange does not know it),
    ``fetch_mark_price(*, symbol) -> Decimal``, ``fetch_mark_prices() -> dict[str, Decimal]``,
    ``fetch_candles(*, symbol, interval, limit) -> list[Candle]`` (oldest first),
    ``fetch_fills(*, symbol, since: datetime | None) -> list[Fill]``,
    ``fetch_symbol_rules() -> list[SymbolRules]``, ``fetch_funding_rate(*, symbol) -> Decimal``.

    Account set-up: ``ensure_leverage(*, symbol, leverage) -> bool`` and
    ``ensure_margin_type(*, symbol, margin_type) -> bool`` send a request only when the exchange
    differs (True when changed); ``check_account_mode()`` raises ``OperatorActionRequired`` in
    hedge or multi-assets mode.

    Orders (the client order id is always ours, derived from our Order row):
    ``create_market_order(*, symbol, side, quantity, client_order_id, reduce_only)
    -> ExchangeOrder``,
    ``create_exit_order(*, symbol, side, kind, stop_price, client_order_id) -> ExchangeOrder``
    (kind "SL" -> STOP_MARKET, "TP" -> TAKE_PROFIT_MARKET, closePosition, workingType MARK_PRICE,
    on /fapi/v1/algoOrder), ``cancel_order(*, symbol, client_order_id, conditional) -> bool``
    (False when already gone), ``cancel_all_orders(*, symbol) -> None`` (regular and conditional).

    Bookkeeping: ``request_count`` and ``weight_used`` (from X-MBX-USED-WEIGHT-1M) since
    construction, for heartbeats and benchmarks.

    Added by the order path (the listed methods are unchanged): ``fetch_position(*, symbol)
    -> ExchangePosition | None`` (1 request), ``fetch_open_orders`` and
    ``fetch_open_conditional_orders`` take an optional ``symbol``, ``fetch_symbol_settings(*,
    symbol) -> (leverage, margin_type)`` (1 request, symbolConfig), ``ensure_symbol_settings(*,
    symbol, leverage, margin_type, current=None) -> (leverage_changed, margin_changed)`` (1 read,
    none when ``current`` is given, + 1 write per difference), ``fetch_symbol_state(*, symbol)
    -> SymbolState`` (1 request: position or None, mark price, leverage, margin type),
    ``account_mode_fresh()`` (no request), ``fetch_kline_rows(*, symbol, interval, limit,
    start_ms, end_ms)`` (raw rows, 1 request), ``resync_clock()`` (1 request), ``clone()``
    (same configuration, for another thread: a gateway is used by one thread at a time) and
    ``twins(count)`` (clones kept on the gateway and reused).
    ``ExchangeOrder.actual_order_id`` is the market order a triggered conditional order became.
    While the exchange has asked us to wait (429/418 Retry-After, recorded in
    ``ExchangeRequest.retry_until``) no request is sent: calls raise ``RateLimited`` at once.

    Added by the books: ``fetch_order_fills(*, symbol, order_id) -> list[Fill]`` (1 request,
    userTrades by order id), ``fetch_orders_from(*, symbol, order_id) -> list[ExchangeOrder]``
    (1 request, allOrders from an order id on, the exchange's own liquidation orders included),
    ``fetch_income(*, start, end, symbol=None, income_type=None) -> list[IncomeEntry]`` (1
    request per 1,000 entries). ``Fill`` carries the trade id, commission asset and maker flag.
    """

    # ------------------------------------------------------------------ construction
    def __init__(
        self,
        *,
        client_factory: Callable[[], ccxt.binanceusdm],
        retry_policy: RetryPolicy | None = None,
        request_log: RequestLog | None = None,
        weight_budget_1m: int = DEFAULT_WEIGHT_BUDGET_1M,
    ) -> None:
        self._client_factory = client_factory
        self.request_log = request_log or UnrecordedRequests()
        self.weight_budget_1m = weight_budget_1m
        self.client = client_factory()
        # ccxt hands every raw answer to this hook: it is how the HTTP status, Retry-After and
        # used weight reach error translation (ccxt itself keeps only the body).
        self.client.on_rest_response = self._on_rest_response
        self.retry_policy = retry_policy or default_retry_policy()
        self.request_count = 0
        self.weight_used = 0  # the latest X-MBX-USED-WEIGHT-1M: Binance's count this minute
        self._weight_minute: int | None = None  # the minute ``weight_used`` was read in
        self._last = threading.local()
        self._backoff_until: datetime | None = None  # read from the request log on first use
        self._twins: list[ExchangeGateway] = []

    def clone(self) -> ExchangeGateway:
        """A new gateway with the same configuration and clock offset, for another thread.

        A ccxt client keeps per-request state, so a gateway is used by one thread at a time.
        """
        twin = ExchangeGateway(
            client_factory=self._client_factory,
            retry_policy=self.retry_policy,
            request_log=self.request_log,
            weight_budget_1m=self.weight_budget_1m,
        )
        twin.client.options["timeDifference"] = self.client.options.get("timeDifference", 0)
        twin._backoff_until = self._backoff_until
        # The minute's weight is the account's, not the client's: the twin starts from it.
        twin.weight_used, twin._weight_minute = self.weight_used, self._weight_minute
        return twin

    def twins(self, count: int) -> list[ExchangeGateway]:
        """``count`` clones kept on this gateway, for threads its user starts and joins before
        using it again (a new ccxt client costs tens of milliseconds: not on every entry)."""
        while len(self._twins) < count:
            self._twins.append(self.clone())
        return self._twins[:count]

    def twins_keep(self, twins: list[ExchangeGateway]) -> None:
        """Keep clones built elsewhere (by threads now joined) for ``twins`` to hand out."""
        self._twins.extend(twins)

    # ------------------------------------------------------------------ reads
    def fetch_balance(self) -> AccountBalance:
        """The USDT-M account totals (1 request, GET /fapi/v2/account)."""
        raw = self._call("fetch_balance", "fapiPrivateV2GetAccount", {})
        return AccountBalance(
            wallet=_dec(raw["totalWalletBalance"]),
            equity=_dec(raw["totalMarginBalance"]),
            available=_dec(raw["availableBalance"]),
        )

    def fetch_positions(self) -> list[ExchangePosition]:
        """Every non-zero position (1 request, GET /fapi/v2/positionRisk)."""
        rows = self._call("fetch_positions", "fapiPrivateV2GetPositionRisk", {})
        return [p for p in (_position(row) for row in rows) if p is not None]

    def fetch_position(self, *, symbol: str) -> ExchangePosition | None:
        """The position in one symbol, None when flat (1 request)."""
        rows = self._call(
            "fetch_position", "fapiPrivateV2GetPositionRisk", {"symbol": symbol}, symbol=symbol
        )
        for row in rows:
            position = _position(row)
            if position is not None and position.symbol == symbol:
                return position
        return None

    def fetch_symbol_state(self, *, symbol: str) -> SymbolState:
        """The symbol's position (None when flat), mark price, leverage and margin type in one
        request (GET /fapi/v2/positionRisk?symbol=: v2 lists a flat symbol too, with its mark
        price and settings)."""
        rows = self._call(
            "fetch_symbol_state", "fapiPrivateV2GetPositionRisk", {"symbol": symbol}, symbol=symbol
        )
        row = next((r for r in rows if r["symbol"] == symbol), None)
        if row is None:
            raise ArenaExchangeError(
                f"fetch_symbol_state: {symbol} not in the answer", action="fetch_symbol_state"
            )
        return SymbolState(
            symbol=symbol,
            position=_position(row),
            mark_price=_dec(row["markPrice"]),
            leverage=int(row["leverage"]),
            margin_type=_margin_type(row.get("marginType", "cross")),
        )

    def fetch_open_orders(self, *, symbol: str | None = None) -> list[ExchangeOrder]:
        """Open regular orders, of all symbols or one (1 request)."""
        params = {"symbol": symbol} if symbol else {}
        rows = self._call(
            "fetch_open_orders", "fapiPrivateGetOpenOrders", params, symbol=symbol or ""
        )
        return [_regular_order(row) for row in rows]

    def fetch_open_conditional_orders(self, *, symbol: str | None = None) -> list[ExchangeOrder]:
        """Open algo (conditional) orders, of all symbols or one (1 request)."""
        params = {"symbol": symbol} if symbol else {}
        rows = self._call(
            "fetch_open_conditional_orders",
            "fapiPrivateGetOpenAlgoOrders",
            params,
            symbol=symbol or "",
        )
        return [_algo_order(row) for row in rows]

    def fetch_order(
        self, *, symbol: str, client_order_id: str, conditional: bool
    ) -> ExchangeOrder | None:
        """Look an order up by our client order id; None when the exchange does not know it."""
        try:
            return self._fetch_order_once(
                symbol=symbol, client_order_id=client_order_id, conditional=conditional
            )
        except OrderNotFound:
            return None

    def fetch_mark_price(self, *, symbol: str) -> Decimal:
        """The mark price of one symbol (1 request, GET /fapi/v1/premiumIndex)."""
        raw = self._call(
            "fetch_mark_price", "fapiPublicGetPremiumIndex", {"symbol": symbol}, symbol=symbol
        )
        return _dec(raw["markPrice"])

    def fetch_mark_prices(self) -> dict[str, Decimal]:
        """The mark price of every symbol (1 request)."""
        rows = self._call("fetch_mark_prices", "fapiPublicGetPremiumIndex", {})
        return {row["symbol"]: _dec(row["markPrice"]) for row in rows}

    def fetch_funding_rate(self, *, symbol: str) -> Decimal:
        """The last funding rate of one symbol (1 request)."""
        raw = self._call(
            "fetch_funding_rate", "fapiPublicGetPremiumIndex", {"symbol": symbol}, symbol=symbol
        )
        return _dec(raw["lastFundingRate"])

    def fetch_candles(self, *, symbol: str, interval: str, limit: int) -> list[Candle]:
        """The latest ``limit`` candles, oldest first (1 request, GET /fapi/v1/klines)."""
        rows = self.fetch_kline_rows(symbol=symbol, interval=interval, limit=limit)
        return [
            Candle(
                open_time=_time(row[0]),
                open=_dec(row[1]),
                high=_dec(row[2]),
                low=_dec(row[3]),
                close=_dec(row[4]),
                volume=_dec(row[5]),
            )
            for row in rows
        ]

    def fetch_kline_rows(
        self,
        *,
        symbol: str,
        interval: str,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[list[Any]]:
        """Raw kline rows as Binance sends them (1 request), for downloads that keep every
        column."""
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        return self._call("fetch_candles", "fapiPublicGetKlines", params, symbol=symbol)

    def fetch_fills(self, *, symbol: str, since: datetime | None) -> list[Fill]:
        """This account's trades in one symbol, oldest first (1 request, GET userTrades)."""
        params: dict[str, Any] = {"symbol": symbol, "limit": 1000}
        if since is not None:
            params["startTime"] = int(since.timestamp() * 1000)
        rows = self._call("fetch_fills", "fapiPrivateGetUserTrades", params, symbol=symbol)
        return [_fill(row) for row in rows]

    def fetch_order_fills(self, *, symbol: str, order_id: str) -> list[Fill]:
        """Every trade of one exchange order (1 request, GET userTrades?orderId=)."""
        rows = self._call(
            "fetch_order_fills",
            "fapiPrivateGetUserTrades",
            {"symbol": symbol, "orderId": order_id, "limit": 1000},
            symbol=symbol,
        )
        return [_fill(row) for row in rows]

    def fetch_orders_from(self, *, symbol: str, order_id: str) -> list[ExchangeOrder]:
        """Regular orders of one symbol from ``order_id`` on, the exchange's own included
        (liquidations), oldest first (1 request, GET allOrders?orderId=)."""
        rows = self._call(
            "fetch_orders_from",
            "fapiPrivateGetAllOrders",
            {"symbol": symbol, "orderId": order_id, "limit": 1000},
            symbol=symbol,
        )
        return sorted((_regular_order(row) for row in rows), key=lambda o: int(o.exchange_order_id))

    def fetch_income(
        self,
        *,
        start: datetime,
        end: datetime,
        symbol: str | None = None,
        income_type: str | None = None,
    ) -> list[IncomeEntry]:
        """The income history between ``start`` and ``end`` (inclusive, at most 7 days), oldest
        first: one request per 1,000 entries (GET /fapi/v1/income, paged by time)."""
        entries: list[IncomeEntry] = []
        seen: set[tuple[str, str]] = set()
        cursor = int(start.timestamp() * 1000)
        end_ms = int(end.timestamp() * 1000)
        extra: dict[str, Any] = {}
        if symbol:
            extra["symbol"] = symbol
        if income_type:
            extra["incomeType"] = income_type
        while cursor <= end_ms:
            rows = self._call(
                "fetch_income",
                "fapiPrivateGetIncome",
                {"startTime": cursor, "endTime": end_ms, "limit": INCOME_PAGE, **extra},
                symbol=symbol or "",
            )
            for row in rows:
                entry = _income(row)
                if (entry.income_type, entry.tran_id) not in seen:
                    seen.add((entry.income_type, entry.tran_id))
                    entries.append(entry)
            if len(rows) < INCOME_PAGE:
                break
            # Entries of one millisecond may straddle two pages: the next page starts at the
            # last one's millisecond, and what was seen already is skipped.
            last = max(int(row["time"]) for row in rows)
            cursor = last if last > cursor else last + 1
        return sorted(entries, key=lambda e: e.time)

    def fetch_symbol_rules(self) -> list[SymbolRules]:
        """Filters of every trading symbol (2 requests: exchangeInfo and leverageBracket)."""
        info = self._call("fetch_exchange_info", "fapiPublicGetExchangeInfo", {})
        brackets = self._call("fetch_leverage_brackets", "fapiPrivateGetLeverageBracket", {})
        max_leverage = {
            row["symbol"]: max(int(b["initialLeverage"]) for b in row["brackets"])
            for row in brackets
        }
        return [
            _symbol_rules(raw, max_leverage.get(raw["symbol"], 1))
            for raw in info["symbols"]
            if raw.get("status", "TRADING") == "TRADING"
        ]

    # ------------------------------------------------------------------ account set-up
    def account_mode_fresh(self, *, max_age_seconds: float = ACCOUNT_MODE_MAX_AGE) -> bool:
        """True when this process saw the account pass the mode check within the age (no
        request: ``check_account_mode`` would send none)."""
        checked = _account_mode_checked.get(self.client.urls["api"]["fapiPrivate"])
        return checked is not None and time.monotonic() - checked < max_age_seconds

    def check_account_mode(self, *, max_age_seconds: float = ACCOUNT_MODE_MAX_AGE) -> None:
        """Refuse hedge mode and multi-assets mode (2 requests; none when this process saw the
        account pass within ``max_age_seconds`` — each weighs 30, and they rarely change)."""
        key = self.client.urls["api"]["fapiPrivate"]
        checked = _account_mode_checked.get(key)
        if checked is not None and time.monotonic() - checked < max_age_seconds:
            return
        dual = self._call("fetch_position_mode", "fapiPrivateGetPositionSideDual", {})
        if _bool(dual.get("dualSidePosition")):
            raise OperatorActionRequired(
                "The account is in hedge mode (dual-side positions). The bot trades one-way "
                "positions only: switch the account to one-way mode on Binance."
            )
        multi = self._call("fetch_multi_assets_mode", "fapiPrivateGetMultiAssetsMargin", {})
        if _bool(multi.get("multiAssetsMargin")):
            raise OperatorActionRequired(
                "The account is in multi-assets margin mode. The bot sizes in USDT only: switch "
                "the account to single-asset mode on Binance."
            )
        _account_mode_checked[key] = time.monotonic()

    def fetch_symbol_settings(self, *, symbol: str) -> tuple[int, str]:
        """The exchange's (leverage, margin type) for one symbol (1 request, symbolConfig)."""
        rows = self._call(
            "fetch_symbol_config", "fapiPrivateGetSymbolConfig", {"symbol": symbol}, symbol=symbol
        )
        row = next(r for r in rows if r["symbol"] == symbol)
        return int(row["leverage"]), _margin_type(row["marginType"])

    def ensure_leverage(self, *, symbol: str, leverage: int) -> bool:
        """Set the leverage when the exchange differs (1 request, 2 when changed)."""
        current, _ = self.fetch_symbol_settings(symbol=symbol)
        if current == leverage:
            return False
        self._call(
            "set_leverage",
            "fapiPrivatePostLeverage",
            {"symbol": symbol, "leverage": leverage},
            symbol=symbol,
        )
        return True

    def ensure_margin_type(self, *, symbol: str, margin_type: str) -> bool:
        """Set the margin type when the exchange differs (1 request, 2 when changed)."""
        _, current = self.fetch_symbol_settings(symbol=symbol)
        if current == margin_type:
            return False
        return self._set_margin_type(symbol=symbol, margin_type=margin_type)

    def ensure_symbol_settings(
        self,
        *,
        symbol: str,
        leverage: int,
        margin_type: str,
        current: tuple[int, str] | None = None,
    ) -> tuple[bool, bool]:
        """Both at once: one read (none when ``current`` (leverage, margin type) is given, as
        just read), then a write for each that differs. (changed, changed)."""
        current_leverage, current_margin = current or self.fetch_symbol_settings(symbol=symbol)
        margin_changed = False
        if current_margin != margin_type:
            # Margin type first: Binance refuses it with open orders or a position, and the
            # leverage is per margin type anyway.
            margin_changed = self._set_margin_type(symbol=symbol, margin_type=margin_type)
        leverage_changed = False
        if current_leverage != leverage:
            self._call(
                "set_leverage",
                "fapiPrivatePostLeverage",
                {"symbol": symbol, "leverage": leverage},
                symbol=symbol,
            )
            leverage_changed = True
        return leverage_changed, margin_changed

    def resync_clock(self) -> None:
        """Measure the offset to the exchange clock (1 request) so signatures stay valid."""
        self._attempt("resync_clock", lambda: self.client.load_time_difference(), "", "")

    # ------------------------------------------------------------------ orders
    def create_market_order(
        self, *, symbol: str, side: str, quantity: Decimal, client_order_id: str, reduce_only: bool
    ) -> ExchangeOrder:
        """Send a market order (1 request; after a lost answer, a lookup by client id first)."""
        params = {
            "symbol": symbol,
            "side": side,
            "type": "MARKET",
            "quantity": _plain(quantity),
            "newClientOrderId": client_order_id,
            "newOrderRespType": "RESULT",
        }
        if reduce_only:
            params["reduceOnly"] = "true"
        raw = self._call_order(
            "create_market_order",
            "fapiPrivatePostOrder",
            params,
            symbol=symbol,
            client_order_id=client_order_id,
            conditional=False,
        )
        return raw if isinstance(raw, ExchangeOrder) else _regular_order(raw)

    def create_exit_order(
        self,
        *,
        symbol: str,
        side: str,
        kind: str,
        stop_price: Decimal,
        client_order_id: str,
        quantity: Decimal | None = None,
    ) -> ExchangeOrder:
        """Place a closePosition stop-loss ("SL") or take-profit ("TP") on the mark price
        (1 request to /fapi/v1/algoOrder; after a lost answer, a lookup by client id first).

        With ``quantity`` the exit is a reduce-only order for that quantity instead: Binance
        keeps one closePosition order per type and side (-4130), so a second exit of the same
        kind can only be of this form."""
        order_type = {"SL": "STOP_MARKET", "TP": "TAKE_PROFIT_MARKET"}[kind]
        params = {
            "algoType": "CONDITIONAL",
            "symbol": symbol,
            "side": side,
            "type": order_type,
            "triggerPrice": _plain(stop_price),
            "closePosition": "true",
            "workingType": "MARK_PRICE",
            "clientAlgoId": client_order_id,
        }
        if quantity is not None:
            del params["closePosition"]
            params.update(quantity=_plain(quantity), reduceOnly="true")
        raw = self._call_order(
            "create_exit_order",
            "fapiPrivatePostAlgoOrder",
            params,
            symbol=symbol,
            client_order_id=client_order_id,
            conditional=True,
        )
        return raw if isinstance(raw, ExchangeOrder) else _algo_order(raw)

    def cancel_order(self, *, symbol: str, client_order_id: str, conditional: bool) -> bool:
        """Cancel one order by client id (1 request); False when it is already gone."""
        if conditional:
            method, params = "fapiPrivateDeleteAlgoOrder", {"clientAlgoId": client_order_id}
        else:
            method = "fapiPrivateDeleteOrder"
            params = {"symbol": symbol, "origClientOrderId": client_order_id}
        try:
            self._call(
                "cancel_order", method, params, symbol=symbol, client_order_id=client_order_id
            )
        except OrderNotFound:
            return False
        except OrderRejected as e:
            # Binance answers -2011 "Unknown order" also for an order that already filled.
            if e.code in NOT_FOUND_CODES:
                return False
            raise
        return True

    def cancel_all_orders(self, *, symbol: str) -> None:
        """Cancel every regular and conditional order of one symbol (2 requests)."""
        self._call(
            "cancel_all_orders", "fapiPrivateDeleteAllOpenOrders", {"symbol": symbol}, symbol=symbol
        )
        self._call(
            "cancel_all_conditional_orders",
            "fapiPrivateDeleteAlgoOpenOrders",
            {"symbol": symbol},
            symbol=symbol,
        )

    # ------------------------------------------------------------------ plumbing
    def _set_margin_type(self, *, symbol: str, margin_type: str) -> bool:
        try:
            self._call(
                "set_margin_type",
                "fapiPrivatePostMarginType",
                {"symbol": symbol, "marginType": margin_type},
                symbol=symbol,
            )
        except ArenaExchangeError as e:
            # Not an order action, so the refusal arrives as a plain ExchangeError: -4046 means
            # the exchange already has this margin type (changed meanwhile, by hand or another
            # worker), which is what was wanted.
            if e.code == NO_NEED_TO_CHANGE_MARGIN_TYPE:
                return False
            raise
        return True

    def _fetch_order_once(
        self, *, symbol: str, client_order_id: str, conditional: bool
    ) -> ExchangeOrder:
        if conditional:
            raw = self._call(
                "fetch_order",
                "fapiPrivateGetAlgoOrder",
                {"clientAlgoId": client_order_id},
                symbol=symbol,
                client_order_id=client_order_id,
            )
            return _algo_order(raw)
        raw = self._call(
            "fetch_order",
            "fapiPrivateGetOrder",
            {"symbol": symbol, "origClientOrderId": client_order_id},
            symbol=symbol,
            client_order_id=client_order_id,
        )
        return _regular_order(raw)

    def _refuse_while_backing_off(self, action: str) -> None:
        """Send nothing while the exchange has told us to wait (429/418 with Retry-After).

        Binance lengthens a ban for every request sent during it. The wait is recorded on the
        request log (``ExchangeRequest.retry_until``), so every worker of every process honours
        it; it is read once per gateway, and any answered request lifts it.
        """
        if self._backoff_until is None:
            self._backoff_until = self.request_log.backoff_until()
        remaining = (self._backoff_until - timezone.now()).total_seconds()
        if remaining > 0:
            raise RateLimited(
                f"{action}: not sent, the exchange asked us to wait {remaining:.0f}s more",
                code=-1003,
                action=action,
                retry_after=remaining,
            )
        self._refuse_over_weight_budget(action)

    def _refuse_over_weight_budget(self, action: str) -> None:
        """Send nothing once this minute's used weight (Binance's own count for our IP, from
        X-MBX-USED-WEIGHT-1M) reaches the budget: wait for the next minute instead of a 429.

        The budget sits below Binance's 2,400 so a request already in flight elsewhere cannot
        push the account over the limit.
        """
        now_ms = int(time.time() * 1000)
        minute = now_ms // 60_000
        budget = self.weight_budget_1m
        if self._weight_minute == minute and self.weight_used >= budget:
            wait = (minute + 1) * 60 - now_ms / 1000
            raise RateLimited(
                f"{action}: not sent, {self.weight_used} of the {budget} weight budget used "
                f"this minute; next minute in {wait:.0f}s",
                code=-1003,
                action=action,
                retry_after=wait,
            )

    def _call(
        self,
        action: str,
        method: str,
        params: dict[str, Any],
        *,
        symbol: str = "",
        client_order_id: str = "",
    ) -> Any:
        """One endpoint under the retry policy; each attempt is one recorded request."""
        self._refuse_while_backing_off(action)
        return call_with_retry(
            lambda: self._attempt(
                action, lambda: getattr(self.client, method)(dict(params)), symbol, client_order_id
            ),
            policy=self.retry_policy,
            action=action,
            resync_clock=self.resync_clock,
        )

    def _call_order(
        self,
        action: str,
        method: str,
        params: dict[str, Any],
        *,
        symbol: str,
        client_order_id: str,
        conditional: bool,
    ) -> Any:
        """Send an order; a lost answer is resolved by looking the order up before resending."""

        def send() -> Any:
            try:
                return self._attempt(
                    action,
                    lambda: getattr(self.client, method)(dict(params)),
                    symbol,
                    client_order_id,
                )
            except OrderRejected as e:
                if e.code != DUPLICATE_CLIENT_ORDER_ID:
                    raise
                # The exchange already has this order open: it is ours, sent before.
                return self._fetch_order_once(
                    symbol=symbol, client_order_id=client_order_id, conditional=conditional
                )

        def recover() -> ExchangeOrder | None:
            try:
                return self._fetch_order_once(
                    symbol=symbol, client_order_id=client_order_id, conditional=conditional
                )
            except OrderNotFound:
                return None
            except OrderRejected as e:
                if e.code in NOT_FOUND_CODES:
                    return None
                raise

        self._refuse_while_backing_off(action)
        return call_with_retry(
            send,
            policy=self.retry_policy,
            action=action,
            resync_clock=self.resync_clock,
            recover=recover,
        )

    def _attempt(
        self, action: str, request: Callable[[], Any], symbol: str, client_order_id: str
    ) -> Any:
        """Send one request, record it, and translate a failure into ``core.errors``."""
        self._last.status = None
        self._last.headers = None
        self._last.body = None
        started = time.monotonic()
        self.request_count += 1
        try:
            result = request()
        except ccxt.BaseError as e:
            error = translate_error(
                e,
                action=action,
                status=self._last.status,
                headers=self._last.headers,
                body=self._last.body,
            )
            retry_until = None
            if isinstance(error, RateLimited):
                retry_until = timezone.now() + timedelta(seconds=error.retry_after)
                self._backoff_until = retry_until
            self._record(action, symbol, client_order_id, started, error, retry_until)
            raise error from e
        self._record(action, symbol, client_order_id, started, None)
        if self._backoff_until is not None and self._backoff_until > EPOCH:
            # The wait is over (the policy slept it out): lift it for every worker.
            self._backoff_until = EPOCH
            self.request_log.backoff_lift()
        return result

    def _record(
        self,
        action: str,
        symbol: str,
        client_order_id: str,
        started: float,
        error: ArenaExchangeError | None,
        retry_until: datetime | None = None,
    ) -> None:
        self.request_log.record(
            action=action,
            symbol=symbol,
            client_order_id=client_order_id,
            latency_ms=int((time.monotonic() - started) * 1000),
            error=error,
            retry_until=retry_until,
        )

    def _on_rest_response(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        response_headers: Any,
        response_body: str,
        request_headers: Any,
        request_body: Any,
    ) -> str:
        self._last.status = code
        self._last.headers = response_headers
        self._last.body = response_body
        used = (response_headers or {}).get("X-MBX-USED-WEIGHT-1M")
        if used is not None and str(used).isdigit():
            self.weight_used = int(used)
            self._weight_minute = int(time.time() * 1000) // 60_000
        return response_body.strip()


# ---------------------------------------------------------------------- error translation
# Binance codes, written once. ccxt picks its code table by the request's host, so against the
# paper exchange (a local URL) many of these arrive as a bare ccxt.ExchangeError: the code
# decides, the ccxt class is only the fallback when there is no code.
RATE_LIMIT_CODES = frozenset({-1003, -1015})
CLOCK_SKEW_CODES = frozenset({-1021})
TEMPORARY_CODES = frozenset({-1001, -1006, -1007, -1008})
AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
NOT_FOUND_CODES = frozenset({-2011, -2013})
DUPLICATE_CLIENT_ORDER_ID = -4116
# A closePosition exit of that type and side is already open (one per type and side).
CLOSE_POSITION_EXIT_EXISTS = -4130
# A closePosition exit with no position and no open order to attach it to.
NOTHING_TO_CLOSE = -4509
# "Order would immediately trigger": the price is already through the stop.
WOULD_TRIGGER = -2021
# Open reduce-only orders would exceed the position.
REDUCE_ONLY_EXCEEDS_POSITION = -4118
NO_NEED_TO_CHANGE_MARGIN_TYPE = -4046
ORDER_ACTIONS = frozenset(
    {"create_market_order", "create_exit_order", "cancel_order", "cancel_all_orders"}
)

_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)')
_MSG = re.compile(r'"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_QUERY = re.compile(r"\?\S*")


def parse_binance_error(text: str | None) -> tuple[int | None, str]:
    """Binance's ``{"code": .., "msg": ..}`` from a body or a ccxt message; (None, "") if none."""
    if not text:
        return None, ""
    code = _CODE.search(text)
    msg = _MSG.search(text)
    return (int(code.group(1)) if code else None), (msg.group(1) if msg else "")


def translate_error(
    error: Exception,
    *,
    action: str,
    status: int | None = None,
    headers: Any = None,
    body: str | None = None,
) -> ArenaExchangeError:
    """Map a ccxt exception (with the raw answer, when there was one) to ``core.errors``.

    Order of evidence: Binance's code, then the HTTP status, then ccxt's class.
    """
    code, msg = parse_binance_error(body)
    if code is None:
        code, msg = parse_binance_error(str(error))
    # A query string carries the request's signature: it stays out of logs and the request log.
    text = f"{action}: {msg or _QUERY.sub('', str(error))}"
    if status in (418, 429) or code in RATE_LIMIT_CODES:
        return RateLimited(text, code=code, action=action, retry_after=_retry_after(headers))
    if code in CLOCK_SKEW_CODES:
        return ClockSkew(text, code=code, action=action)
    if code in TEMPORARY_CODES or (status is not None and status >= 500):
        return TemporaryError(text, code=code, action=action)
    if code in AUTH_CODES:
        return AuthenticationFailed(text, code=code, action=action)
    if code in NOT_FOUND_CODES:
        return OrderNotFound(text, code=code, action=action)
    if code is not None or (status is not None and 400 <= status < 500 and status != 408):
        # The exchange judged the request itself: resending it cannot change the answer.
        kind = OrderRejected if action in ORDER_ACTIONS else ArenaExchangeError
        return kind(text, code=code, action=action)
    if isinstance(error, ccxt.DDoSProtection):
        return RateLimited(text, code=code, action=action, retry_after=_retry_after(headers))
    if isinstance(error, ccxt.NetworkError):  # timeouts, dropped connections, 5xx
        return TemporaryError(text, code=code, action=action)
    if isinstance(error, ccxt.AuthenticationError):
        return AuthenticationFailed(text, code=code, action=action)
    if isinstance(error, ccxt.OrderNotFound):
        return OrderNotFound(text, code=code, action=action)
    if isinstance(error, ccxt.InvalidOrder | ccxt.InsufficientFunds):
        return OrderRejected(text, code=code, action=action)
    return ArenaExchangeError(text, code=code, action=action)


def _retry_after(headers: Any) -> float:
    raw = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- parsing
def _dec(value: Any) -> Decimal:
    # Binance sends amounts as strings; str() keeps a stray JSON number exact as printed.
    return Decimal(str(value))


def _positive_or_none(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    number = _dec(value)
    return number if number > 0 else None


def _plain(value: Decimal) -> str:
    """A decimal as Binance reads it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _time(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _margin_type(raw: str) -> str:
    return "ISOLATED" if raw.upper() == "ISOLATED" else "CROSSED"


def _position(row: dict[str, Any]) -> ExchangePosition | None:
    amount = _dec(row["positionAmt"])
    if not amount:
        return None
    leverage = int(row["leverage"])
    notional = abs(_dec(row.get("notional") or "0"))
    margin_type = _margin_type(row.get("marginType", "cross"))
    return ExchangePosition(
        symbol=row["symbol"],
        side="LONG" if amount > 0 else "SHORT",
        quantity=abs(amount),
        entry_price=_dec(row["entryPrice"]),
        mark_price=_dec(row["markPrice"]),
        unrealized_pnl=_dec(row["unRealizedProfit"]),
        leverage=leverage,
        margin_type=margin_type,
        initial_margin=notional / leverage,
    )


def _regular_order(raw: dict[str, Any]) -> ExchangeOrder:
    return ExchangeOrder(
        symbol=raw["symbol"],
        client_order_id=raw["clientOrderId"],
        exchange_order_id=str(raw["orderId"]),
        is_conditional=False,
        order_type=raw.get("origType") or raw["type"],
        side=raw["side"],
        status=raw["status"],
        quantity=_dec(raw.get("origQty") or "0"),
        filled_quantity=_dec(raw.get("executedQty") or "0"),
        average_price=_positive_or_none(raw.get("avgPrice")),
        stop_price=_positive_or_none(raw.get("stopPrice")),
        reduce_only=_bool(raw.get("reduceOnly")),
        close_position=_bool(raw.get("closePosition")),
    )


def _algo_order(raw: dict[str, Any]) -> ExchangeOrder:
    return ExchangeOrder(
        symbol=raw["symbol"],
        client_order_id=raw["clientAlgoId"],
        exchange_order_id=str(raw["algoId"]),
        is_conditional=True,
        order_type=raw["orderType"],
        side=raw["side"],
        status=raw["algoStatus"],
        quantity=_dec(raw.get("quantity") or "0"),
        filled_quantity=Decimal("0"),
        average_price=_positive_or_none(raw.get("actualPrice")),
        stop_price=_positive_or_none(raw.get("triggerPrice")),
        reduce_only=_bool(raw.get("reduceOnly")),
        close_position=_bool(raw.get("closePosition")),
        actual_order_id=str(raw.get("actualOrderId") or ""),
    )


def _fill(row: dict[str, Any]) -> Fill:
    return Fill(
        symbol=row["symbol"],
        order_id=str(row["orderId"]),
        side=row["side"],
        price=_dec(row["price"]),
        quantity=_dec(row["qty"]),
        realized_pnl=_dec(row["realizedPnl"]),
        commission=_dec(row["commission"]),
        time=_time(row["time"]),
        trade_id=int(row["id"]),
        commission_asset=row.get("commissionAsset") or "USDT",
        maker=_bool(row.get("maker")),
    )


def _income(row: dict[str, Any]) -> IncomeEntry:
    return IncomeEntry(
        symbol=row.get("symbol") or "",
        income_type=row["incomeType"],
        amount=_dec(row["income"]),
        asset=row.get("asset") or "USDT",
        time=_time(row["time"]),
        tran_id=str(row.get("tranId") or ""),
        trade_id=str(row.get("tradeId") or ""),
    )


def _symbol_rules(raw: dict[str, Any], max_leverage: int) -> SymbolRules:
    filters = {f["filterType"]: f for f in raw["filters"]}
    lot, market_lot = filters["LOT_SIZE"], filters.get("MARKET_LOT_SIZE", filters["LOT_SIZE"])
    return SymbolRules(
        symbol=raw["symbol"],
        base_asset=raw["baseAsset"],
        quote_asset=raw["quoteAsset"],
        tick_size=_dec(filters["PRICE_FILTER"]["tickSize"]).normalize(),
        step_size=_dec(lot["stepSize"]).normalize(),
        min_qty=_dec(lot["minQty"]).normalize(),
        max_qty=_dec(lot["maxQty"]).normalize(),
        market_step_size=_dec(market_lot["stepSize"]).normalize(),
        market_min_qty=_dec(market_lot["minQty"]).normalize(),
        market_max_qty=_dec(market_lot["maxQty"]).normalize(),
        min_notional=_dec(filters.get("MIN_NOTIONAL", {}).get("notional", "0")).normalize(),
        price_precision=int(raw["pricePrecision"]),
        quantity_precision=int(raw["quantityPrecision"]),
        max_leverage=max_leverage,
    )
