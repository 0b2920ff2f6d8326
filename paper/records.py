"""The engine's records (orders, algo orders, positions, trades) and their Binance JSON shapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

from paper.symbols import Symbol

ZERO = Decimal(0)
# Binance books every wallet movement in whole units of 1e-8; so do we, so that the income
# history adds up to the wallet exactly.
WALLET_STEP = Decimal("1e-8")
# The income types the exchange writes (a subset of Binance's list).
INCOME_TYPES = (
    "TRANSFER",
    "REALIZED_PNL",
    "COMMISSION",
    "FUNDING_FEE",
    "INSURANCE_CLEAR",
)


def money(value: Decimal) -> str:
    """Format an amount of USDT as Binance does in account endpoints (8 decimals)."""
    return f"{value:.8f}"


def plain(value: Decimal) -> str:
    """Format a decimal without exponent or trailing zeros ("0" for zero)."""
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return text


def avg_price(sym: Symbol, value: Decimal) -> str:
    """Format an average fill price: ticks as they are, averages with a few more digits."""
    if value == 0:
        return sym.fmt_price(ZERO)
    quantized = value.quantize(Decimal(1).scaleb(-(sym.price_precision + 3)))
    return f"{quantized:f}"


@dataclass
class Order:
    """A regular order (``/fapi/v1/order``): LIMIT, MARKET, or the child of a triggered algo."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    reduce_only: bool
    close_position: bool
    time: int
    update_time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    stop_price: Decimal = ZERO
    working_type: str = "CONTRACT_PRICE"
    orig_type: str = ""
    price_protect: bool = False
    good_till_date: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    def to_binance(self, sym: Symbol, *, with_time: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": sym.fmt_price(self.price),
            "avgPrice": avg_price(sym, self.avg),
            "origQty": sym.fmt_qty(self.orig_qty),
            "executedQty": sym.fmt_qty(self.executed_qty),
            "cumQty": sym.fmt_qty(self.executed_qty),
            "cumQuote": plain(self.cum_quote) if self.cum_quote else "0.00000",
            "timeInForce": self.time_in_force,
            "type": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": self.close_position,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": sym.fmt_price(self.stop_price),
            "workingType": self.working_type,
            "priceProtect": self.price_protect,
            "origType": self.orig_type or self.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": self.good_till_date,
        }
        if with_time:
            body["time"] = self.time
        body["updateTime"] = self.update_time
        return body


@dataclass
class AlgoOrder:
    """A conditional order on ``/fapi/v1/algoOrder`` (algoType CONDITIONAL)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    close_position: bool
    reduce_only: bool
    price_protect: bool
    create_time: int
    update_time: int
    algo_status: str = "NEW"
    trigger_time: int = 0
    actual_order_id: int | None = None
    actual_price: Decimal = ZERO
    activate_price: Decimal = ZERO
    callback_rate: Decimal = ZERO
    # Trailing stops: whether the activation price was reached, and the best price since then.
    activated: bool = False
    extreme: Decimal = ZERO
    # Open-order queries hide the order until this wall-clock ms (an injected fault).
    visible_at: int = 0

    @property
    def is_open(self) -> bool:
        return self.algo_status == "NEW"

    def to_binance(self, sym: Symbol) -> dict[str, Any]:
        body: dict[str, Any] = {
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": self.order_type,
            "symbol": self.symbol,
            "side": self.side,
            "positionSide": "BOTH",
            "timeInForce": self.time_in_force,
            "quantity": sym.fmt_qty(self.quantity),
            "algoStatus": self.algo_status,
            "actualOrderId": "" if self.actual_order_id is None else str(self.actual_order_id),
            "actualPrice": avg_price(sym, self.actual_price),
            "triggerPrice": sym.fmt_price(self.trigger_price),
            "price": sym.fmt_price(self.price),
            "icebergQuantity": None,
            "tpTriggerPrice": sym.fmt_price(ZERO),
            "tpPrice": sym.fmt_price(ZERO),
            "slTriggerPrice": sym.fmt_price(ZERO),
            "slPrice": sym.fmt_price(ZERO),
            "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": self.working_type,
            "priceMatch": "NONE",
            "closePosition": self.close_position,
            "priceProtect": self.price_protect,
            # Binance reports closePosition orders as reduce-only.
            "reduceOnly": self.reduce_only or self.close_position,
            "createTime": self.create_time,
            "updateTime": self.update_time,
            "triggerTime": self.trigger_time,
            "goodTillDate": 0,
        }
        if self.order_type == "TRAILING_STOP_MARKET":
            body["activatePrice"] = sym.fmt_price(self.activate_price)
            body["callbackRate"] = plain(self.callback_rate)
        return body


@dataclass
class Position:
    """A one-way (BOTH) position; ``amount`` is signed, negative for short."""

    symbol: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    update_time: int = 0


@dataclass
class SymbolSettings:
    """Per-symbol account settings: leverage and margin type ("cross" or "isolated")."""

    leverage: int = 20
    margin_type: str = "cross"


@dataclass
class Trade:
    """One fill as ``/fapi/v1/userTrades`` reports it."""

    trade_id: int
    symbol: str
    order_id: int
    side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    maker: bool
    time: int
    commission_asset: str = "USDT"

    def to_binance(self, sym: Symbol) -> dict[str, Any]:
        return {
            "buyer": self.side == "BUY",
            "commission": money(self.commission),
            "commissionAsset": self.commission_asset,
            "id": self.trade_id,
            "maker": self.maker,
            "orderId": self.order_id,
            "price": sym.fmt_price(self.price),
            "qty": sym.fmt_qty(self.qty),
            "quoteQty": plain(self.price * self.qty),
            "realizedPnl": money(self.realized_pnl),
            "side": self.side,
            "positionSide": "BOTH",
            "symbol": self.symbol,
            "time": self.time,
        }


@dataclass
class Income:
    """One wallet movement as ``/fapi/v1/income`` reports it."""

    tran_id: int
    symbol: str
    income_type: str
    income: Decimal
    asset: str
    info: str
    time: int
    trade_id: str = ""

    def to_binance(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": money(self.income),
            "asset": self.asset,
            "info": self.info,
            "time": self.time,
            "tranId": self.tran_id,
            "tradeId": self.trade_id,
        }


def dump(record: Any) -> dict[str, Any]:
    """Serialise a record for the state file (decimals as strings)."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(record).items()}


def load(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a record written by :func:`dump`."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.type in ("Decimal",) and value is not None:
            value = Decimal(value)
        kwargs[f.name] = value
    return cls(**kwargs)


__all__ = ["AlgoOrder", "Income", "Order", "Position", "SymbolSettings", "Trade", "dump", "load"]
