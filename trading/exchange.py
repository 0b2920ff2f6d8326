"""The one door to the exchange: wraps ccxt's binanceusdm, translates its errors, records requests.

CONTRACT (implemented by the order-path work; the guard, cycles and sentinel rely on it):
every method performs a fixed, documented number of requests, retries only temporary errors
through the one retry policy (``trading.retry``), raises only ``trading.errors`` exceptions, and
returns the dataclasses below with ``Decimal`` for every price, quantity and amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


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
    ``create_market_order(*, symbol, side, quantity, client_order_id, reduce_only) -> ExchangeOrder``,
    ``create_exit_order(*, symbol, side, kind, stop_price, client_order_id) -> ExchangeOrder``
    (kind "SL" -> STOP_MARKET, "TP" -> TAKE_PROFIT_MARKET, closePosition, workingType MARK_PRICE,
    on /fapi/v1/algoOrder), ``cancel_order(*, symbol, client_order_id, conditional) -> bool``
    (False when already gone), ``cancel_all_orders(*, symbol) -> None`` (regular and conditional).

    Bookkeeping: ``request_count`` and ``weight_used`` (from X-MBX-USED-WEIGHT-1M) since
    construction, for heartbeats and benchmarks.
    """


def exchange_gateway() -> ExchangeGateway:
    """Return the gateway configured by the environment (EXCHANGE=paper|binance)."""
    raise NotImplementedError
