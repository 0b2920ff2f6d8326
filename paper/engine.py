"""The exchange itself: one account's balances, orders, algo orders, positions and matching.

Everything runs under one re-entrant lock, so a request sees and leaves a consistent state. Prices
come from a feed (or the control API) through :meth:`Engine.set_price` (a jump: triggered orders
fill at the new price) or :meth:`Engine.move_price` (a continuous move: a stop inside the move fills
at its trigger price). Requests arrive as :class:`~paper.params.Params` and leave as Binance JSON.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from paper import funding, rules
from paper.errors import BinanceError, reject
from paper.funding import FundingEvent
from paper.options import Options
from paper.params import Params
from paper.records import (
    INCOME_TYPES,
    WALLET_STEP,
    ZERO,
    AlgoOrder,
    Income,
    Order,
    Position,
    SymbolSettings,
    Trade,
    dump,
    load,
    money,
)
from paper.symbols import DEFAULT_PRICES, Symbol, round_to_tick, symbols

TAKER_FEE = Decimal("0.0005")
MAKER_FEE = Decimal("0.0002")
DEFAULT_BALANCE = Decimal("10000")
CONDITIONAL_TYPES = (
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
# Algo ids live far above order ids, as on Binance, so one can never be mistaken for the other.
FIRST_ALGO_ID = 1_000_000_000_000
WEEK_MS = 7 * 24 * 3600 * 1000
# A continuous move is walked in this many equal steps; a stop passed on the way fills at the
# first step beyond its trigger (the next price the path offers), not at the trigger itself.
PATH_STEPS = 8
# Paying fees in BNB (feeBurn) takes 10% off, as on Binance.
BNB_FEE_DISCOUNT = Decimal("0.9")


def wall_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    """The simulated exchange for a single account (one API key pair)."""

    def __init__(
        self,
        *,
        clock: Callable[[], int] = wall_ms,
        prices: dict[str, Decimal] | None = None,
        slippage: Decimal = ZERO,
        options: Options | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.start_options = options or Options()
        self.clock = clock
        self.slippage = slippage
        self.start_prices = {**DEFAULT_PRICES, **(prices or {})}
        self.listeners: list[Callable[[str, Decimal], None]] = []
        # Observers of every order, fill and wallet change (the user data stream), under the lock.
        self.observers: list[Callable[..., None]] = []
        # Funding falls due on the exchange clock's 8-hour boundaries, unless a replay feed
        # settles it on its own (market) time and turns this off.
        self.funding_by_clock = True
        self.reset()

    def _publish(self, kind: str, *records: Any) -> None:
        for observer in self.observers:
            observer(kind, *records)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every order, position and trade; restore start prices and balance."""
        with self.lock:
            self.options = self.start_options
            self.wallet: dict[str, Decimal] = {"USDT": DEFAULT_BALANCE}
            self.dual_side = False
            self.fee_burn = False
            self.last: dict[str, Decimal] = {}
            self.mark: dict[str, Decimal] = {}
            for name, price in self.start_prices.items():
                if name in symbols():
                    self.last[name] = self.mark[name] = price
            self.positions: dict[str, Position] = {n: Position(symbol=n) for n in symbols()}
            self.settings: dict[str, SymbolSettings] = {n: SymbolSettings() for n in symbols()}
            self.orders: dict[int, Order] = {}
            self.algos: dict[int, AlgoOrder] = {}
            self.trades: list[Trade] = []
            self.incomes: list[Income] = []
            self.tran_ids = itertools.count(1)
            self.order_ids = itertools.count(1)
            self.algo_ids = itertools.count(FIRST_ALGO_ID)
            self.trade_ids = itertools.count(1)
            self.orders_accepted = 0
            self.algo_visibility_delay_ms = 0
            self.update_time = 0
            # Exchange time runs ahead of the clock by this much once the control API advanced it.
            self.time_offset_ms = 0
            self._reset_funding()

    def _reset_funding(self) -> None:
        now = self.now()
        self.funding_rates: dict[str, Decimal] = dict.fromkeys(symbols(), funding.DEFAULT_RATE)
        self.funding_settled_at = funding.boundary_at_or_before(now)
        self.funding_history: list[FundingEvent] = [
            FundingEvent(
                symbol=name,
                rate=funding.DEFAULT_RATE,
                time=self.funding_settled_at - back * funding.FUNDING_INTERVAL_MS,
                mark_price=self.mark[name],
            )
            for back in range(funding.PUBLISHED_BEFORE_START - 1, -1, -1)
            for name in symbols()
            if name in self.mark
        ]

    def to_state(self) -> dict[str, Any]:
        """Return everything a restart must keep, JSON-serialisable."""
        with self.lock:
            return {
                "wallet": {k: str(v) for k, v in self.wallet.items()},
                "last": {k: str(v) for k, v in self.last.items()},
                "mark": {k: str(v) for k, v in self.mark.items()},
                "positions": [dump(p) for p in self.positions.values()],
                "settings": {k: dump(v) for k, v in self.settings.items()},
                "orders": [dump(o) for o in self.orders.values()],
                "algos": [dump(a) for a in self.algos.values()],
                "trades": [dump(t) for t in self.trades],
                "incomes": [dump(i) for i in self.incomes],
                "orders_accepted": self.orders_accepted,
                "dual_side": self.dual_side,
                "fee_burn": self.fee_burn,
                "time_offset_ms": self.time_offset_ms,
                "funding_rates": {k: str(v) for k, v in self.funding_rates.items()},
                "funding_settled_at": self.funding_settled_at,
                "funding_history": [dump(f) for f in self.funding_history],
            }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_state` wrote."""
        with self.lock:
            self.reset()
            self.wallet = {k: Decimal(v) for k, v in state["wallet"].items()}
            self.last.update({k: Decimal(v) for k, v in state["last"].items()})
            self.mark.update({k: Decimal(v) for k, v in state["mark"].items()})
            for p in state["positions"]:
                self.positions[p["symbol"]] = load(Position, p)
            for name, s in state["settings"].items():
                self.settings[name] = load(SymbolSettings, s)
            self.orders = {o["order_id"]: load(Order, o) for o in state["orders"]}
            self.algos = {a["algo_id"]: load(AlgoOrder, a) for a in state["algos"]}
            self.trades = [load(Trade, t) for t in state["trades"]]
            self.incomes = [load(Income, i) for i in state.get("incomes", [])]
            self.tran_ids = itertools.count(max((i.tran_id for i in self.incomes), default=0) + 1)
            self.order_ids = itertools.count(max(self.orders, default=0) + 1)
            self.algo_ids = itertools.count(max(self.algos, default=FIRST_ALGO_ID - 1) + 1)
            self.trade_ids = itertools.count(max((t.trade_id for t in self.trades), default=0) + 1)
            self.orders_accepted = int(state.get("orders_accepted", 0))
            self.time_offset_ms = int(state.get("time_offset_ms", 0))
            self.dual_side = bool(state.get("dual_side", False))
            self.fee_burn = bool(state.get("fee_burn", False))
            if "funding_history" in state:
                self.funding_rates.update(
                    {k: Decimal(v) for k, v in state["funding_rates"].items() if k in symbols()}
                )
                self.funding_settled_at = int(state["funding_settled_at"])
                self.funding_history = [load(FundingEvent, f) for f in state["funding_history"]]

    def now(self) -> int:
        """Exchange time in ms: the clock plus whatever :meth:`advance_time` added."""
        return self.clock() + self.time_offset_ms

    def advance_time(self, ms: int) -> None:
        """Move exchange time forward by ``ms`` (never back)."""
        if ms < 0:
            raise ValueError("exchange time only moves forward")
        with self.lock:
            self.time_offset_ms += ms
            self.catch_up()

    # ------------------------------------------------------------------ funding
    def catch_up(self) -> None:
        """Settle every funding time the exchange clock has passed (clock-driven funding only)."""
        if not self.funding_by_clock:
            return
        with self.lock:
            for at in funding.due_between(self.funding_settled_at, self.now()):
                self.settle_funding(at)

    def next_funding_time(self) -> int:
        return funding.next_boundary(max(self.funding_settled_at, self.now()))

    def set_funding_rate(self, symbol: str, rate: Decimal) -> None:
        """Publish ``rate`` for the next settlements of ``symbol``."""
        self._sym(symbol)
        with self.lock:
            self.funding_rates[symbol] = rate

    def settle_funding(self, at: int) -> None:
        """Publish every symbol's rate at ``at`` and charge it to the open positions."""
        with self.lock:
            self.funding_settled_at = max(self.funding_settled_at, at)
            for name, rate in self.funding_rates.items():
                mark = self.mark.get(name)
                if mark is None:
                    continue
                self.funding_history.append(
                    FundingEvent(symbol=name, rate=rate, time=at, mark_price=mark)
                )
                pos = self.positions[name]
                if not pos.amount:
                    continue
                # Longs pay shorts when the rate is positive.
                booked = self._book("FUNDING_FEE", -pos.amount * mark * rate, symbol=name, at=at)
                if self._is_isolated(name):
                    pos.isolated_wallet += booked
            self._check_liquidations()

    def funding_rate_history(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/fundingRate``: oldest first; without a window the latest ``limit``."""
        with self.lock:
            self.catch_up()
            sym = p.symbol(required=False)
            start = p.integer("startTime")
            end = p.integer("endTime")
            limit = p.integer("limit", 100) or 100
            if not 1 <= limit <= 1000:
                raise reject(-1130, "limit")
            rows = [
                f
                for f in self.funding_history
                if (sym is None or f.symbol == sym.name)
                and (start is None or f.time >= start)
                and (end is None or f.time <= end)
            ]
            rows = rows[:limit] if start is not None else rows[-limit:]
            return [f.to_binance(symbols()[f.symbol]) for f in rows]

    # ------------------------------------------------------------------ control
    def set_balance(self, asset: str, amount: Decimal) -> None:
        """Set a wallet balance; the difference is booked as a TRANSFER, as a deposit would be."""
        with self.lock:
            self._book("TRANSFER", amount - self.wallet.get(asset, ZERO), asset=asset)
            self._check_liquidations()

    def _book(
        self,
        income_type: str,
        amount: Decimal,
        *,
        symbol: str = "",
        trade_id: str = "",
        asset: str = "USDT",
        at: int | None = None,
    ) -> Decimal:
        """Move ``amount`` (rounded to the wallet step) into the wallet with its income row.

        Every wallet change goes through here, so the income history sums to the wallet exactly.
        Returns the amount booked.
        """
        booked = amount.quantize(WALLET_STEP, rounding=ROUND_HALF_UP)
        if not booked:
            return ZERO
        self.wallet[asset] = self.wallet.get(asset, ZERO) + booked
        self.incomes.append(
            Income(
                tran_id=next(self.tran_ids),
                symbol=symbol,
                income_type=income_type,
                income=booked,
                asset=asset,
                info=income_type,
                time=self.now() if at is None else at,
                trade_id=trade_id,
            )
        )
        self._publish("income", self.incomes[-1])
        return booked

    def set_price(self, symbol: str, price: Decimal, mark: Decimal | None = None) -> None:
        """Jump last price (and mark price, unless ``mark`` is given) and match.

        A jump is a gap: stops it passes fill at ``price``, not at their trigger.
        """
        self._move(symbol, price, continuous=False, mark=mark)

    def move_price(self, symbol: str, price: Decimal, mark: Decimal | None = None) -> None:
        """Move continuously to ``price``; a stop passed on the way fills at the next point of
        the path beyond its trigger. ``mark`` sets the mark price apart, as for set_price."""
        self._move(symbol, price, continuous=True, mark=mark)

    def _move(
        self, symbol: str, price: Decimal, *, continuous: bool, mark: Decimal | None = None
    ) -> None:
        sym = self._sym(symbol)
        with self.lock:
            start = self.last.get(symbol, price)
            self.last[symbol] = price
            self.mark[symbol] = price if mark is None else mark
            self._match(sym, start, price, continuous=continuous)
            self._check_liquidations()
        for listener in self.listeners:
            listener(symbol, price)

    # ------------------------------------------------------------------ helpers
    def _sym(self, name: str) -> Symbol:
        sym = symbols().get(name)
        if sym is None:
            raise reject(-1121)
        return sym

    def _price_of(self, symbol: str, working_type: str = "CONTRACT_PRICE") -> Decimal:
        return self.mark[symbol] if working_type == "MARK_PRICE" else self.last[symbol]

    def _fill_price(self, sym: Symbol, side: str, price: Decimal) -> Decimal:
        """Apply the configured slippage to a taker fill, staying on the tick."""
        if not self.slippage:
            return price
        factor = 1 + self.slippage if side == "BUY" else 1 - self.slippage
        return round_to_tick(price * factor, sym.tick)

    @property
    def usdt(self) -> Decimal:
        return self.wallet.get("USDT", ZERO)

    def _unrealized(self, pos: Position) -> Decimal:
        if not pos.amount:
            return ZERO
        return (self.mark[pos.symbol] - pos.entry_price) * pos.amount

    def _notional(self, pos: Position) -> Decimal:
        return pos.amount * self.mark[pos.symbol]

    def _maint_margin(self, pos: Position) -> Decimal:
        if not pos.amount:
            return ZERO
        notional = abs(self._notional(pos))
        bracket = symbols()[pos.symbol].bracket_for(notional)
        return max(ZERO, notional * bracket.maint_ratio - bracket.cum)

    def _initial_margin(self, pos: Position) -> Decimal:
        return abs(self._notional(pos)) / self.settings[pos.symbol].leverage

    def _is_isolated(self, symbol: str) -> bool:
        return self.settings[symbol].margin_type == "isolated"

    def _open_orders_margin(self, symbol: str | None = None) -> Decimal:
        total = ZERO
        for order in self.orders.values():
            if order.is_open and (symbol is None or order.symbol == symbol):
                remaining = order.orig_qty - order.executed_qty
                total += remaining * order.price / self.settings[order.symbol].leverage
        return total

    def _cross_wallet(self) -> Decimal:
        return self.usdt - sum((p.isolated_wallet for p in self.positions.values()), ZERO)

    def _cross_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.amount and not self._is_isolated(p.symbol)]

    def available_balance(self) -> Decimal:
        """Wallet plus cross unrealized PnL, less cross margin and open-order margin."""
        cross = self._cross_positions()
        value = (
            self._cross_wallet()
            + sum((self._unrealized(p) for p in cross), ZERO)
            - sum((self._initial_margin(p) for p in cross), ZERO)
            - self._open_orders_margin()
        )
        return max(ZERO, value)

    def _increasing_qty(self, symbol: str, side: str, qty: Decimal) -> Decimal:
        amount = self.positions[symbol].amount
        if amount == 0 or (amount > 0) == (side == "BUY"):
            return qty
        return max(ZERO, qty - abs(amount))

    def _check_margin(self, sym: Symbol, side: str, qty: Decimal, price: Decimal) -> None:
        increase = self._increasing_qty(sym.name, side, qty)
        if not increase:
            return
        leverage = self.settings[sym.name].leverage
        required = increase * price / leverage + increase * price * TAKER_FEE
        if required > self.available_balance():
            raise reject(-2019)
        amount = abs(self.positions[sym.name].amount) + increase
        allowed = [b for b in sym.brackets if amount * price <= b.cap]
        if not allowed or leverage > allowed[0].max_leverage:
            raise reject(-2027)

    def _closable(self, symbol: str, side: str) -> Decimal:
        """How much an order on ``side`` can close of the position now (0 if it would open)."""
        amount = self.positions[symbol].amount
        closes = amount != 0 and (amount > 0) == (side == "SELL")
        return abs(amount) if closes else ZERO

    def _reduce_only_qty(self, symbol: str, side: str, qty: Decimal) -> Decimal:
        """The quantity a new reduce-only order may have, or Binance's rejection.

        Larger than the position: -2022 (documented) or shrunk to the position (observed), as
        the ``oversize_reduce_only`` option says. With the reduce-only orders already open on
        that side it must still fit in the position: -4118 otherwise.
        """
        closable = self._closable(symbol, side)
        if not closable:
            raise reject(-2022)
        if qty > closable:
            if self.options.oversize_reduce_only == "reject":
                raise reject(-2022)
            qty = closable
        waiting = sum(
            (
                o.orig_qty - o.executed_qty
                for o in self.orders.values()
                if o.is_open and o.symbol == symbol and o.reduce_only and o.side == side
            ),
            ZERO,
        )
        if waiting + qty > closable:
            raise reject(-4118)
        return qty

    def _client_id_in_use(self, client_id: str) -> bool:
        return any(
            o.is_open and o.client_order_id == client_id for o in self.orders.values()
        ) or any(a.is_open and a.client_algo_id == client_id for a in self.algos.values())

    # ------------------------------------------------------------------ orders
    def place_order(self, p: Params) -> dict[str, Any]:
        """``POST /fapi/v1/order``: LIMIT or MARKET; conditional types belong to algoOrder."""
        with self.lock:
            order = self._place_order(p)
            self.orders_accepted += 1
            sym = symbols()[order.symbol]
            if p.text("newOrderRespType", "ACK") == "ACK" and order.type == "MARKET":
                # ACK answers before the fill is known: the order as it was accepted.
                body = order.to_binance(sym, with_time=False)
                body.update(
                    status="NEW",
                    executedQty=sym.fmt_qty(ZERO),
                    cumQty=sym.fmt_qty(ZERO),
                    cumQuote="0.00000",
                    avgPrice=sym.fmt_price(ZERO),
                )
                return body
            return order.to_binance(sym, with_time=False)

    def _place_order(self, p: Params) -> Order:
        sym = p.symbol()
        assert sym is not None
        side = p.required("side")
        order_type = p.required("type")
        if side not in ("BUY", "SELL"):
            raise reject(-1117)
        if order_type in CONDITIONAL_TYPES:
            raise reject(-4120)
        if order_type not in ("LIMIT", "MARKET"):
            raise reject(-1116)
        self._check_position_side(p)
        client_id = p.client_id("newClientOrderId") or f"paper-{self.now()}-{next(self.order_ids)}"
        reduce_only = p.boolean("reduceOnly")
        if p.boolean("closePosition"):
            raise reject(-4136, order_type, "true")
        qty = p.decimal("quantity", required=True)
        assert qty is not None
        price = ZERO
        tif = "GTC"
        if order_type == "LIMIT":
            tif = p.required("timeInForce")
            if tif not in TIME_IN_FORCE:
                raise reject(-1115)
            price_in = p.decimal("price", required=True)
            assert price_in is not None
            rules.check_price(sym, price_in)
            price = price_in
        elif "price" in p:
            raise reject(-1106, "price")
        rules.check_quantity(sym, qty, market=order_type == "MARKET")
        if self._client_id_in_use(client_id):
            raise reject(-4116)
        current = self.last[sym.name]
        notional_price = price if order_type == "LIMIT" else current
        rules.check_notional(sym, qty, notional_price, exempt=reduce_only)
        if order_type == "LIMIT":
            rules.check_percent_price(sym, price, self.mark[sym.name])
        open_count = sum(1 for o in self.orders.values() if o.is_open and o.symbol == sym.name)
        if order_type == "LIMIT" and open_count >= sym.max_orders:
            raise reject(-2025)
        if reduce_only:
            qty = self._reduce_only_qty(sym.name, side, qty)
        crosses = order_type == "MARKET" or (
            price >= current if side == "BUY" else price <= current
        )
        if order_type == "LIMIT" and tif == "GTX" and crosses:
            raise reject(-5022)
        self._check_margin(sym, side, qty, current if crosses else price)
        now = self.now()
        order = Order(
            order_id=next(self.order_ids),
            client_order_id=client_id,
            symbol=sym.name,
            side=side,
            type=order_type,
            time_in_force=tif,
            orig_qty=qty,
            price=price,
            reduce_only=reduce_only,
            close_position=False,
            time=now,
            update_time=now,
        )
        self.orders[order.order_id] = order
        self._publish("order", order)
        if crosses:
            self._take(order, qty, self._fill_price(sym, side, current))
        elif tif in ("IOC", "FOK"):
            order.status = "EXPIRED"
            self._publish("order", order)
        return order

    def _check_position_side(self, p: Params) -> None:
        """One-way mode takes BOTH only; hedge mode requires LONG or SHORT."""
        position_side = p.text("positionSide", "BOTH")
        if not self.dual_side:
            if position_side != "BOTH":
                raise reject(-4061)
            return
        if position_side not in ("LONG", "SHORT"):
            raise reject(-4061)
        # Hedge-mode positions are not simulated: the account can be switched (so a client
        # sees Binance's answers), but it cannot trade until switched back.
        raise reject(-1020)

    def place_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /fapi/v1/batchOrders``: each order succeeds or fails on its own."""
        if not 1 <= len(batch) <= 5:
            raise reject(-4082)
        results: list[dict[str, Any]] = []
        for item in batch:
            if not isinstance(item, dict):
                raise reject(-1130, "batchOrders")
            values = {k: _json_param(v) for k, v in item.items()}
            values.setdefault("newOrderRespType", "ACK")
            try:
                results.append(self.place_order(Params(values)))
            except BinanceError as e:
                results.append(e.body())
        return results

    def _find_order(self, p: Params, *, missing_code: int) -> Order:
        sym = p.symbol()
        assert sym is not None
        order_id = p.integer("orderId")
        client_id = p.text("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.symbol != sym.name:
                raise reject(missing_code)
            return order
        matches = [
            o
            for o in self.orders.values()
            if o.client_order_id == client_id and o.symbol == sym.name
        ]
        if not matches:
            raise reject(missing_code)
        # The open one wins; otherwise the latest with that id.
        return max(matches, key=lambda o: (o.is_open, o.order_id))

    def get_order(self, p: Params) -> dict[str, Any]:
        with self.lock:
            order = self._find_order(p, missing_code=-2013)
            return order.to_binance(symbols()[order.symbol])

    def cancel_order(self, p: Params) -> dict[str, Any]:
        with self.lock:
            order = self._find_order(p, missing_code=-2011)
            if not order.is_open:
                raise reject(-2011)
            order.status = "CANCELED"
            order.update_time = self.now()
            self._publish("order", order)
            return order.to_binance(symbols()[order.symbol], with_time=False)

    def cancel_all(self, p: Params) -> dict[str, Any]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            now = self.now()
            for order in self.orders.values():
                if order.is_open and order.symbol == sym.name:
                    order.status = "CANCELED"
                    order.update_time = now
                    self._publish("order", order)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def open_orders(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol(required=False)
            return [
                o.to_binance(symbols()[o.symbol])
                for o in self.orders.values()
                if o.is_open and (sym is None or o.symbol == sym.name)
            ]

    def all_orders(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            limit = min(p.integer("limit", 500) or 500, 1000)
            start = p.integer("orderId", 0) or 0
            rows = [o for o in self.orders.values() if o.symbol == sym.name and o.order_id >= start]
            return [o.to_binance(sym) for o in rows[-limit:]]

    # ------------------------------------------------------------------ algo orders
    def place_algo(self, p: Params) -> dict[str, Any]:
        """``POST /fapi/v1/algoOrder`` with algoType CONDITIONAL."""
        with self.lock:
            algo = self._place_algo(p)
            self.orders_accepted += 1
            return algo.to_binance(symbols()[algo.symbol])

    def _place_algo(self, p: Params) -> AlgoOrder:
        algo_type = p.required("algoType")
        if algo_type != "CONDITIONAL":
            raise reject(-1130, "algoType")
        sym = p.symbol()
        assert sym is not None
        side = p.required("side")
        order_type = p.required("type")
        if side not in ("BUY", "SELL"):
            raise reject(-1117)
        if order_type not in CONDITIONAL_TYPES:
            raise reject(-1116)
        self._check_position_side(p)
        client_id = p.client_id("clientAlgoId") or f"paper-algo-{uuid.uuid4().hex[:24]}"
        close_position = p.boolean("closePosition")
        reduce_only = p.boolean("reduceOnly")
        working_type = p.text("workingType", "CONTRACT_PRICE") or "CONTRACT_PRICE"
        if working_type not in ("CONTRACT_PRICE", "MARK_PRICE"):
            raise reject(-4031, working_type)
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise reject(-4136, order_type, "true")
            if "quantity" in p:
                raise reject(-4137)
            if reduce_only:
                raise reject(-1106, "reduceOnly")
        trigger = ZERO
        callback = ZERO
        activate = ZERO
        if order_type == "TRAILING_STOP_MARKET":
            callback_in = p.decimal("callbackRate", required=True)
            assert callback_in is not None
            if not Decimal("0.1") <= callback_in <= Decimal("10"):
                raise reject(-1130, "callbackRate")
            callback = callback_in
            activate_in = p.decimal("activatePrice")
            if activate_in is not None:
                rules.check_price(sym, activate_in, stop=True)
                activate = activate_in
        else:
            trigger_in = p.decimal("triggerPrice", required=True)
            assert trigger_in is not None
            rules.check_price(sym, trigger_in, stop=True)
            trigger = trigger_in
        price = ZERO
        tif = p.text("timeInForce", "GTC") or "GTC"
        if close_position:
            # Binance reports closePosition orders as GTE_GTC: good till the position ends.
            tif = "GTE_GTC"
        if order_type in ("STOP", "TAKE_PROFIT"):
            price_in = p.decimal("price", required=True)
            assert price_in is not None
            rules.check_price(sym, price_in)
            price = price_in
        qty = ZERO
        if not close_position:
            qty_in = p.decimal("quantity", required=True)
            assert qty_in is not None
            rules.check_quantity(sym, qty_in, market=order_type.endswith("MARKET"))
            qty = qty_in
        if self._client_id_in_use(client_id):
            raise reject(-4116)
        if not close_position:
            reference = price or trigger or activate or self.last[sym.name]
            rules.check_notional(sym, qty, reference, exempt=reduce_only)
        open_algos = sum(1 for a in self.algos.values() if a.is_open and a.symbol == sym.name)
        if open_algos >= sym.max_algo_orders:
            raise reject(-4045)
        if close_position:
            self._check_close_position(sym.name, side, order_type)
        current = self._price_of(sym.name, working_type)
        if order_type == "TRAILING_STOP_MARKET":
            if activate and (activate <= current if side == "SELL" else activate >= current):
                raise reject(-2021)
        elif _triggered(order_type, side, trigger, current):
            raise reject(-2021)
        now = self.now()
        algo = AlgoOrder(
            algo_id=next(self.algo_ids),
            client_algo_id=client_id,
            symbol=sym.name,
            side=side,
            order_type=order_type,
            time_in_force=tif,
            quantity=qty,
            trigger_price=trigger,
            price=price,
            working_type=working_type,
            close_position=close_position,
            reduce_only=reduce_only,
            price_protect=p.boolean("priceProtect"),
            create_time=now,
            update_time=now,
            activate_price=activate,
            callback_rate=callback,
            activated=not activate,
            extreme=current,
            visible_at=wall_ms() + self.algo_visibility_delay_ms,
        )
        self.algos[algo.algo_id] = algo
        self._publish("algo", algo)
        return algo

    def _check_close_position(self, symbol: str, side: str, order_type: str) -> None:
        """One open closePosition order per type and side (-4130), and something to close."""
        if any(
            a.is_open
            and a.symbol == symbol
            and a.close_position
            and a.side == side
            and a.order_type == order_type
            for a in self.algos.values()
        ):
            raise reject(-4130)
        if (
            self.options.close_without_position == "reject"
            and not self.positions[symbol].amount
            and not self._has_open_orders(symbol)
        ):
            raise reject(-4509)

    def _find_algo(self, p: Params, *, missing_code: int) -> AlgoOrder:
        algo_id = p.integer("algoId")
        client_id = p.text("clientAlgoId")
        if algo_id is None and client_id is None:
            raise BinanceError(
                -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"
            )
        if algo_id is not None:
            algo = self.algos.get(algo_id)
        else:
            matches = [a for a in self.algos.values() if a.client_algo_id == client_id]
            algo = max(matches, key=lambda a: (a.is_open, a.algo_id)) if matches else None
        if algo is None:
            raise reject(missing_code)
        return algo

    def get_algo(self, p: Params) -> dict[str, Any]:
        """``GET /fapi/v1/algoOrder``: finds an order even while open-order queries hide it."""
        with self.lock:
            algo = self._find_algo(p, missing_code=-2013)
            return algo.to_binance(symbols()[algo.symbol])

    def cancel_algo(self, p: Params) -> dict[str, Any]:
        with self.lock:
            algo = self._find_algo(p, missing_code=-2011)
            if not algo.is_open:
                raise reject(-2011)
            algo.algo_status = "CANCELED"
            algo.update_time = self.now()
            self._publish("algo", algo)
            return {
                "algoId": algo.algo_id,
                "clientAlgoId": algo.client_algo_id,
                "code": "200",
                "msg": "success",
            }

    def cancel_all_algos(self, p: Params) -> dict[str, Any]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            now = self.now()
            for algo in self.algos.values():
                if algo.is_open and algo.symbol == sym.name:
                    algo.algo_status = "CANCELED"
                    algo.update_time = now
                    self._publish("algo", algo)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def open_algos(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol(required=False)
            now = wall_ms()
            return [
                a.to_binance(symbols()[a.symbol])
                for a in self.algos.values()
                if a.is_open and (sym is None or a.symbol == sym.name) and a.visible_at <= now
            ]

    def all_algos(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            limit = min(p.integer("limit", 500) or 500, 1000)
            rows = [a for a in self.algos.values() if a.symbol == sym.name]
            return [a.to_binance(sym) for a in rows[-limit:]]

    def reveal_algos(self) -> None:
        """End a visibility-delay fault: every hidden algo order shows up now."""
        with self.lock:
            self.algo_visibility_delay_ms = 0
            for algo in self.algos.values():
                algo.visible_at = 0

    # ------------------------------------------------------------------ matching
    def _match(self, sym: Symbol, start: Decimal, end: Decimal, *, continuous: bool) -> None:
        for order in list(self.orders.values()):
            if not order.is_open or order.symbol != sym.name:
                continue
            if (order.side == "BUY" and end <= order.price) or (
                order.side == "SELL" and end >= order.price
            ):
                self._execute(order, order.orig_qty - order.executed_qty, order.price, maker=True)
        # Stops fire in the order the price path reaches them. A triggered stop is a market
        # order: after a jump it fills at the last price, whatever price triggered it; inside a
        # continuous move at the next price the path offers beyond the trigger.
        last = self.last[sym.name]
        due: list[tuple[Decimal, AlgoOrder, Decimal]] = []
        for algo in list(self.algos.values()):
            if not algo.is_open or algo.symbol != sym.name:
                continue
            price = self._price_of(sym.name, algo.working_type)
            if algo.order_type == "TRAILING_STOP_MARKET":
                stop = self._trailing_stop(algo, price)
                if stop is None:
                    continue
                fill = stop if continuous else last
            elif _triggered(algo.order_type, algo.side, algo.trigger_price, price):
                fill = last
                if continuous and algo.working_type == "CONTRACT_PRICE":
                    fill = _next_on_path(start, end, algo.trigger_price, sym.tick)
            else:
                continue
            due.append((abs(fill - start), algo, fill))
        for _, algo, fill in sorted(due, key=lambda d: (d[0], d[1].algo_id)):
            if algo.is_open:
                self._trigger(sym, algo, fill)

    def _trailing_stop(self, algo: AlgoOrder, price: Decimal) -> Decimal | None:
        """Advance a trailing stop's state; return its stop price if ``price`` crossed it."""
        if not algo.activated:
            reached = (
                price >= algo.activate_price
                if algo.side == "SELL"
                else price <= algo.activate_price
            )
            if not reached:
                return None
            algo.activated = True
            algo.extreme = price
        rate = algo.callback_rate / 100
        if algo.side == "SELL":
            algo.extreme = max(algo.extreme, price)
            stop = round_to_tick(algo.extreme * (1 - rate), symbols()[algo.symbol].tick)
            return stop if price <= stop else None
        algo.extreme = min(algo.extreme, price)
        stop = round_to_tick(algo.extreme * (1 + rate), symbols()[algo.symbol].tick)
        return stop if price >= stop else None

    def _trigger(self, sym: Symbol, algo: AlgoOrder, fill_price: Decimal) -> None:
        now = self.now()
        algo.trigger_time = algo.update_time = now
        closable = self._closable(sym.name, algo.side)
        qty = algo.quantity
        if algo.close_position or algo.reduce_only:
            if not closable:
                algo.algo_status = "EXPIRED"
                self._publish("algo", algo)
                return
            qty = closable if algo.close_position else min(qty, closable)
        is_limit = algo.order_type in ("STOP", "TAKE_PROFIT")
        price = algo.price if is_limit else ZERO
        current = self.last[sym.name]
        crosses = not is_limit or (price >= current if algo.side == "BUY" else price <= current)
        try:
            self._check_margin(sym, algo.side, qty, current if crosses else price)
        except BinanceError:
            # The order it would become fails the margin check: Binance reports REJECTED.
            algo.algo_status = "REJECTED"
            self._publish("algo", algo)
            return
        order = Order(
            order_id=next(self.order_ids),
            client_order_id=algo.client_algo_id,
            symbol=sym.name,
            side=algo.side,
            type="LIMIT" if is_limit else "MARKET",
            time_in_force=algo.time_in_force if is_limit or algo.close_position else "GTC",
            orig_qty=qty,
            price=price,
            reduce_only=algo.reduce_only or algo.close_position,
            close_position=algo.close_position,
            time=now,
            update_time=now,
            stop_price=algo.trigger_price,
            working_type=algo.working_type,
            orig_type=algo.order_type,
        )
        self.orders[order.order_id] = order
        algo.algo_status = "TRIGGERED"
        algo.actual_order_id = order.order_id
        self._publish("algo", algo)
        self._publish("order", order)
        if crosses:
            if is_limit:
                self._take(order, qty, self._fill_price(sym, algo.side, current))
            else:
                spread = self._stop_spread(sym, algo.side, fill_price)
                self._take(order, qty, self._fill_price(sym, algo.side, spread))
            algo.actual_price = order.avg
            algo.algo_status = "FINISHED"
        else:
            algo.algo_status = "FINISHED"
        self._publish("algo", algo)

    def _stop_spread(self, sym: Symbol, side: str, price: Decimal) -> Decimal:
        """The price a triggered market order gets: ``stop_spread_bps`` worse, on the tick."""
        bps = self.options.stop_spread_bps
        if not bps:
            return price
        if side == "BUY":
            return _to_tick(price * (1 + bps / 10_000), sym.tick, ROUND_CEILING)
        return max(sym.tick, _to_tick(price * (1 - bps / 10_000), sym.tick, ROUND_FLOOR))

    def _take(self, order: Order, qty: Decimal, price: Decimal) -> None:
        """Fill a taker order from ``price`` on, walking the book level by level.

        Each level holds ``market_depth`` USDT and lies ``depth_step_bps`` (at least a tick)
        beyond the one before, so an order larger than a level pays impact: one trade per level.
        """
        sym = symbols()[order.symbol]
        level_qty, step = self.book_level(sym, price)
        buy = order.side == "BUY"
        limit = order.price if order.type == "LIMIT" else None

        def level_price(level: int) -> Decimal:
            offset = step * level
            return price + offset if buy else max(sym.tick, price - offset)

        def within_limit(at: Decimal) -> bool:
            return limit is None or (at <= limit if buy else at >= limit)

        if order.time_in_force == "FOK":
            last_level = int((qty / level_qty).to_integral_value(rounding=ROUND_CEILING)) - 1
            if not within_limit(level_price(last_level)):
                order.status = "EXPIRED"  # fill or kill: the book cannot fill it all
                return
        level = 0
        remaining = qty
        while remaining > 0 and order.is_open and within_limit(level_price(level)):
            take = min(remaining, level_qty)
            self._execute(order, take, level_price(level), maker=False)
            remaining -= take
            level += 1
        if remaining > 0 and order.is_open and order.time_in_force == "IOC":
            order.status = "EXPIRED"  # what the book could not fill at the limit is dropped
        # A GTC limit order keeps the rest on the book at its price.

    def book_level(self, sym: Symbol, price: Decimal) -> tuple[Decimal, Decimal]:
        """The quantity on each book level around ``price`` and the distance between levels."""
        level_qty = (self.options.market_depth / price).quantize(sym.step, rounding=ROUND_FLOOR)
        level_qty = max(sym.step, level_qty - level_qty % sym.step)
        step = _to_tick(price * self.options.depth_step_bps / 10_000, sym.tick, ROUND_CEILING)
        return level_qty, max(sym.tick, step)

    def _execute(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        """Fill ``qty`` of ``order``; a reduce-only order is checked again against the position.

        A reduce-only order never opens or flips a position: it fills what it can still close
        and the rest expires, as on Binance.
        """
        if order.reduce_only:
            closable = self._closable(order.symbol, order.side)
            if closable < qty:
                if closable:
                    self._fill(order, closable, price, maker=maker)
                if order.is_open:
                    order.status = "EXPIRED"
                    order.update_time = self.now()
                return
        self._fill(order, qty, price, maker=maker)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        """Execute ``qty`` of ``order`` at ``price``: position, margin, fee, PnL, trade."""
        sym = symbols()[order.symbol]
        pos = self.positions[order.symbol]
        settings = self.settings[order.symbol]
        isolated = settings.margin_type == "isolated"
        now = self.now()
        signed = qty if order.side == "BUY" else -qty
        old = pos.amount
        realized = ZERO
        if old == 0 or (old > 0) == (signed > 0):
            total = abs(old) + qty
            pos.entry_price = (abs(old) * pos.entry_price + qty * price) / total
            if isolated:
                pos.isolated_wallet += qty * price / settings.leverage
        else:
            closing = min(qty, abs(old))
            realized = closing * (price - pos.entry_price) * (1 if old > 0 else -1)
            if isolated:
                pos.isolated_wallet -= pos.isolated_wallet * closing / abs(old)
            opening = qty - closing
            if opening:
                pos.entry_price = price
                if isolated:
                    pos.isolated_wallet += opening * price / settings.leverage
        pos.amount = old + signed
        if pos.amount == 0:
            pos.entry_price = ZERO
            pos.isolated_wallet = ZERO
        pos.update_time = now
        fee = _wallet_amount(qty * price * (MAKER_FEE if maker else TAKER_FEE))
        realized = _wallet_amount(realized)
        trade_id = next(self.trade_ids)
        self._book("REALIZED_PNL", realized, symbol=sym.name, trade_id=str(trade_id))
        fee, fee_asset = self._fee_in_bnb(fee)
        self._book("COMMISSION", -fee, symbol=sym.name, trade_id=str(trade_id), asset=fee_asset)
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        order.update_time = now
        self.trades.append(
            Trade(
                trade_id=trade_id,
                symbol=sym.name,
                order_id=order.order_id,
                side=order.side,
                price=price,
                qty=qty,
                realized_pnl=realized,
                commission=fee,
                maker=maker,
                time=now,
                commission_asset=fee_asset,
            )
        )
        self._publish("trade", order, self.trades[-1])
        if old != 0 and pos.amount == 0:
            self._on_flat(sym.name)

    def _fee_in_bnb(self, fee: Decimal) -> tuple[Decimal, str]:
        """With feeBurn on and enough BNB, the fee is paid in BNB at a 10% discount."""
        bnb_price = self.mark.get("BNBUSDT")
        if not self.fee_burn or not fee or not bnb_price:
            return fee, "USDT"
        in_bnb = _wallet_amount(fee * BNB_FEE_DISCOUNT / bnb_price)
        if in_bnb <= 0 or self.wallet.get("BNB", ZERO) < in_bnb:
            return fee, "USDT"
        return in_bnb, "BNB"

    def _on_flat(self, symbol: str) -> None:
        """A position went flat: its closePosition orders have nothing left to close.

        Binance's algo-order documentation has the system expire them (EXPIRED); users of the
        older API saw them stay open. The ``exit_on_flat`` option picks one.
        """
        if self.options.exit_on_flat != "expire":
            return
        now = self.now()
        for algo in self.algos.values():
            if algo.is_open and algo.symbol == symbol and algo.close_position:
                algo.algo_status = "EXPIRED"
                algo.update_time = now
                self._publish("algo", algo)

    # ------------------------------------------------------------------ liquidation
    def _check_liquidations(self) -> None:
        for pos in list(self.positions.values()):
            if pos.amount and self._is_isolated(pos.symbol):
                if pos.isolated_wallet + self._unrealized(pos) <= self._maint_margin(pos):
                    self._liquidate(pos, lose=pos.isolated_wallet)
        cross = self._cross_positions()
        if not cross:
            return
        balance = self._cross_wallet() + sum((self._unrealized(p) for p in cross), ZERO)
        if balance <= sum((self._maint_margin(p) for p in cross), ZERO):
            for pos in cross:
                self._liquidate(pos, lose=None)
            # The cross margin left (or owed) goes to the insurance fund, as Binance's clearance
            # fee: the cross wallet ends at zero and isolated wallets are untouched.
            self._book("INSURANCE_CLEAR", -self._cross_wallet())

    def _liquidate(self, pos: Position, *, lose: Decimal | None) -> None:
        """Close ``pos`` at the mark price with a LIQUIDATION order; ``lose`` is its margin."""
        sym = symbols()[pos.symbol]
        now = self.now()
        for order in self.orders.values():
            if order.is_open and order.symbol == pos.symbol:
                order.status = "CANCELED"
                order.update_time = now
                self._publish("order", order)
        wallet_before = self.usdt
        side = "SELL" if pos.amount > 0 else "BUY"
        order = Order(
            order_id=next(self.order_ids),
            client_order_id=f"autoclose-{now}",
            symbol=pos.symbol,
            side=side,
            type="LIQUIDATION",
            time_in_force="IOC",
            orig_qty=abs(pos.amount),
            price=self.mark[pos.symbol],
            reduce_only=True,
            close_position=False,
            time=now,
            update_time=now,
        )
        self.orders[order.order_id] = order
        self._publish("order", order)
        self._fill(order, abs(pos.amount), self.mark[sym.name], maker=False)
        if lose is not None:
            # An isolated position loses exactly its margin, whatever the mark price did.
            self._book("INSURANCE_CLEAR", wallet_before - lose - self.usdt, symbol=pos.symbol)

    # ------------------------------------------------------------------ account
    def set_leverage(self, p: Params) -> dict[str, Any]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            raw = p.required("leverage")
            if not raw.isdigit() or not 1 <= int(raw) <= sym.max_leverage:
                raise reject(-4028, raw)
            leverage = int(raw)
            pos = self.positions[sym.name]
            notional = abs(self._notional(pos))
            allowed = [b for b in sym.brackets if notional <= b.cap]
            if not allowed or leverage > allowed[0].max_leverage:
                raise reject(-2027)
            self.settings[sym.name].leverage = leverage
            cap = self._max_notional(sym.name)
            return {"leverage": leverage, "maxNotionalValue": f"{cap:f}", "symbol": sym.name}

    def set_margin_type(self, p: Params) -> dict[str, Any]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            raw = p.required("marginType").upper()
            if raw not in ("ISOLATED", "CROSSED"):
                raise reject(-1130, "marginType")
            wanted = "isolated" if raw == "ISOLATED" else "cross"
            if self.settings[sym.name].margin_type == wanted:
                raise reject(-4046)
            if any(o.is_open and o.symbol == sym.name for o in self.orders.values()) or any(
                a.is_open and a.symbol == sym.name for a in self.algos.values()
            ):
                raise reject(-4047)
            if self.positions[sym.name].amount:
                raise reject(-4048)
            self.settings[sym.name].margin_type = wanted
            return {"code": 200, "msg": "success"}

    def _max_notional(self, symbol: str) -> Decimal:
        """The largest position the leverage allows: the cap of the last bracket that takes it.

        A leverage between two brackets' maxima (say 30x between 25x and 50x) is allowed only
        in the brackets that permit at least that much, so the lower cap applies.
        """
        leverage = self.settings[symbol].leverage
        return max(b.cap for b in symbols()[symbol].brackets if b.max_leverage >= leverage)

    def _liquidation_price(self, pos: Position) -> Decimal:
        """Binance's one-way liquidation price formula (zero when it would be negative)."""
        if not pos.amount:
            return ZERO
        qty = abs(pos.amount)
        side = 1 if pos.amount > 0 else -1
        bracket = symbols()[pos.symbol].bracket_for(abs(self._notional(pos)))
        if self._is_isolated(pos.symbol):
            wallet, others_mm, others_upnl = pos.isolated_wallet, ZERO, ZERO
        else:
            others = [p for p in self._cross_positions() if p.symbol != pos.symbol]
            wallet = self._cross_wallet()
            others_mm = sum((self._maint_margin(p) for p in others), ZERO)
            others_upnl = sum((self._unrealized(p) for p in others), ZERO)
        numerator = wallet - others_mm + others_upnl + bracket.cum - side * qty * pos.entry_price
        denominator = qty * bracket.maint_ratio - side * qty
        price = numerator / denominator
        return max(ZERO, price)

    def _position_v2(self, pos: Position) -> dict[str, Any]:
        sym = symbols()[pos.symbol]
        settings = self.settings[pos.symbol]
        upnl = self._unrealized(pos)
        return {
            "symbol": pos.symbol,
            "positionAmt": sym.fmt_qty(pos.amount),
            "entryPrice": _plain_or_zero(pos.entry_price),
            "breakEvenPrice": _plain_or_zero(self._break_even(pos)),
            "markPrice": money(self.mark[pos.symbol]),
            "unRealizedProfit": money(upnl),
            "liquidationPrice": _plain_or_zero(self._liquidation_price(pos)),
            "leverage": str(settings.leverage),
            "maxNotionalValue": f"{self._max_notional(pos.symbol):f}",
            "marginType": settings.margin_type,
            "isolatedMargin": money(pos.isolated_wallet + upnl if pos.isolated_wallet else ZERO),
            "isAutoAddMargin": "false",
            "positionSide": "BOTH",
            "notional": money(self._notional(pos)),
            "isolatedWallet": money(pos.isolated_wallet),
            "updateTime": pos.update_time,
        }

    def _position_v3(self, pos: Position) -> dict[str, Any]:
        sym = symbols()[pos.symbol]
        upnl = self._unrealized(pos)
        initial = self._initial_margin(pos)
        orders_margin = self._open_orders_margin(pos.symbol)
        return {
            "symbol": pos.symbol,
            "positionSide": "BOTH",
            "positionAmt": sym.fmt_qty(pos.amount),
            "entryPrice": _plain_or_zero(pos.entry_price),
            "breakEvenPrice": _plain_or_zero(self._break_even(pos)),
            "markPrice": money(self.mark[pos.symbol]),
            "unRealizedProfit": money(upnl),
            "liquidationPrice": _plain_or_zero(self._liquidation_price(pos)),
            "isolatedMargin": money(pos.isolated_wallet + upnl if pos.isolated_wallet else ZERO),
            "notional": money(self._notional(pos)),
            "marginAsset": "USDT",
            "isolatedWallet": money(pos.isolated_wallet),
            "initialMargin": money(initial + orders_margin),
            "maintMargin": money(self._maint_margin(pos)),
            "positionInitialMargin": money(initial),
            "openOrderInitialMargin": money(orders_margin),
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": pos.update_time,
        }

    def _break_even(self, pos: Position) -> Decimal:
        if not pos.amount:
            return ZERO
        side = 1 if pos.amount > 0 else -1
        return pos.entry_price * (1 + side * TAKER_FEE * 2)

    def _has_open_orders(self, symbol: str) -> bool:
        return any(o.is_open and o.symbol == symbol for o in self.orders.values())

    def position_risk(self, p: Params, *, version: int) -> list[dict[str, Any]]:
        """v2 lists every symbol; v3 only those with a position or open orders, as Binance."""
        with self.lock:
            sym = p.symbol(required=False)
            rows = [
                pos
                for pos in self.positions.values()
                if (sym is None or pos.symbol == sym.name)
                and (version == 2 or pos.amount or self._has_open_orders(pos.symbol))
            ]
            if version == 2:
                return [self._position_v2(pos) for pos in rows]
            return [self._position_v3(pos) for pos in rows]

    def _totals(self) -> dict[str, Decimal]:
        positions = [p for p in self.positions.values() if p.amount]
        cross = self._cross_positions()
        upnl = sum((self._unrealized(p) for p in positions), ZERO)
        cross_upnl = sum((self._unrealized(p) for p in cross), ZERO)
        position_im = sum((self._initial_margin(p) for p in positions), ZERO)
        orders_im = self._open_orders_margin()
        available = self.available_balance()
        return {
            "totalInitialMargin": position_im + orders_im,
            "totalMaintMargin": sum((self._maint_margin(p) for p in positions), ZERO),
            "totalWalletBalance": self.usdt,
            "totalUnrealizedProfit": upnl,
            "totalMarginBalance": self.usdt + upnl,
            "totalPositionInitialMargin": position_im,
            "totalOpenOrderInitialMargin": orders_im,
            "totalCrossWalletBalance": self._cross_wallet(),
            "totalCrossUnPnl": cross_upnl,
            "availableBalance": available,
            "maxWithdrawAmount": min(available, self._cross_wallet()),
        }

    def _asset_row(self) -> dict[str, Any]:
        t = self._totals()
        return {
            "asset": "USDT",
            "walletBalance": money(t["totalWalletBalance"]),
            "unrealizedProfit": money(t["totalUnrealizedProfit"]),
            "marginBalance": money(t["totalMarginBalance"]),
            "maintMargin": money(t["totalMaintMargin"]),
            "initialMargin": money(t["totalInitialMargin"]),
            "positionInitialMargin": money(t["totalPositionInitialMargin"]),
            "openOrderInitialMargin": money(t["totalOpenOrderInitialMargin"]),
            "crossWalletBalance": money(t["totalCrossWalletBalance"]),
            "crossUnPnl": money(t["totalCrossUnPnl"]),
            "availableBalance": money(t["availableBalance"]),
            "maxWithdrawAmount": money(t["maxWithdrawAmount"]),
            "marginAvailable": True,
            "updateTime": self.now(),
        }

    def account(self, *, version: int) -> dict[str, Any]:
        """``GET /fapi/v2/account`` and ``/fapi/v3/account``."""
        with self.lock:
            body: dict[str, Any] = {}
            if version == 2:
                body.update(
                    feeTier=0,
                    canTrade=True,
                    canDeposit=True,
                    canWithdraw=True,
                    updateTime=0,
                    multiAssetsMargin=False,
                    tradeGroupId=-1,
                )
            body.update({k: money(v) for k, v in self._totals().items()})
            body["assets"] = [self._asset_row()]
            positions = []
            for pos in self.positions.values():
                if version == 3 and not (pos.amount or self._has_open_orders(pos.symbol)):
                    continue
                sym = symbols()[pos.symbol]
                row: dict[str, Any] = {
                    "symbol": pos.symbol,
                    "positionSide": "BOTH",
                    "positionAmt": sym.fmt_qty(pos.amount),
                    "unrealizedProfit": money(self._unrealized(pos)),
                    "isolatedMargin": money(pos.isolated_wallet),
                    "notional": money(self._notional(pos)),
                    "isolatedWallet": money(pos.isolated_wallet),
                    "initialMargin": money(self._initial_margin(pos)),
                    "maintMargin": money(self._maint_margin(pos)),
                    "updateTime": pos.update_time,
                }
                if version == 2:
                    row.update(
                        positionInitialMargin=money(self._initial_margin(pos)),
                        openOrderInitialMargin=money(self._open_orders_margin(pos.symbol)),
                        leverage=str(self.settings[pos.symbol].leverage),
                        isolated=self._is_isolated(pos.symbol),
                        entryPrice=_plain_or_zero(pos.entry_price),
                        maxNotional=f"{self._max_notional(pos.symbol):f}",
                        bidNotional="0",
                        askNotional="0",
                    )
                positions.append(row)
            body["positions"] = positions
            return body

    def balance(self) -> list[dict[str, Any]]:
        """``GET /fapi/v2/balance`` and ``/fapi/v3/balance``."""
        with self.lock:
            t = self._totals()
            return [
                {
                    "accountAlias": "SgsR",
                    "asset": "USDT",
                    "balance": money(t["totalWalletBalance"]),
                    "crossWalletBalance": money(t["totalCrossWalletBalance"]),
                    "crossUnPnl": money(t["totalCrossUnPnl"]),
                    "availableBalance": money(t["availableBalance"]),
                    "maxWithdrawAmount": money(t["maxWithdrawAmount"]),
                    "marginAvailable": True,
                    "updateTime": self.now(),
                }
            ]

    def symbol_config(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol(required=False)
            return [
                {
                    "symbol": name,
                    "marginType": "ISOLATED" if s.margin_type == "isolated" else "CROSSED",
                    "isAutoAddMargin": "false",
                    "leverage": s.leverage,
                    "maxNotionalValue": f"{self._max_notional(name):f}",
                }
                for name, s in self.settings.items()
                if sym is None or sym.name == name
            ]

    def user_trades(self, p: Params) -> list[dict[str, Any]]:
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            order_id = p.integer("orderId")
            start = p.integer("startTime")
            end = p.integer("endTime")
            from_id = p.integer("fromId")
            limit = min(p.integer("limit", 500) or 500, 1000)
            # Binance answers at most 7 days per request: the last 7 without a window, 7 from
            # (or up to) a single bound, and -1127 for a longer window. orderId and fromId
            # look trades up directly.
            if order_id is None and from_id is None:
                if start is None and end is None:
                    end = self.now()
                    start = end - WEEK_MS
                elif start is None:
                    assert end is not None
                    start = end - WEEK_MS
                elif end is None:
                    end = start + WEEK_MS
                elif end - start > WEEK_MS:
                    raise reject(-1127, 168)
            rows = [
                t
                for t in self.trades
                if t.symbol == sym.name
                and (order_id is None or t.order_id == order_id)
                and (start is None or t.time >= start)
                and (end is None or t.time <= end)
                and (from_id is None or t.trade_id >= from_id)
            ]
            rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
            return [t.to_binance(sym) for t in rows]

    def income(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/income``: the wallet's movements, oldest first.

        Without startTime and endTime only the last 7 days answer, as Binance documents; with
        one of them the window is 7 days from (or up to) it. ``limit`` defaults to 100 (max
        1000) and ``page`` pages through the window.
        """
        with self.lock:
            sym = p.symbol(required=False)
            income_type = p.text("incomeType")
            if income_type is not None and income_type not in _ALL_INCOME_TYPES:
                raise reject(-1130, "incomeType")
            start = p.integer("startTime")
            end = p.integer("endTime")
            limit = p.integer("limit", 100) or 100
            if not 1 <= limit <= 1000:
                raise reject(-1130, "limit")
            page = p.integer("page", 1) or 1
            if page < 1:
                raise reject(-1130, "page")
            if start is None and end is None:
                end = self.now()
                start = end - WEEK_MS
            elif start is None:
                assert end is not None
                start = end - WEEK_MS
            elif end is None:
                end = start + WEEK_MS
            if start > end:
                raise reject(-1130, "startTime")
            rows = [
                i
                for i in self.incomes
                if start <= i.time <= end
                and (sym is None or i.symbol == sym.name)
                and (income_type is None or i.income_type == income_type)
            ]
            offset = (page - 1) * limit
            return [i.to_binance() for i in rows[offset : offset + limit]]

    # ------------------------------------------------------------------ account modes
    def position_mode(self) -> dict[str, Any]:
        return {"dualSidePosition": self.dual_side}

    def set_position_mode(self, p: Params) -> dict[str, Any]:
        """``POST /fapi/v1/positionSide/dual``: only with no position and no open order."""
        with self.lock:
            wanted = p.boolean("dualSidePosition")
            if "dualSidePosition" not in p:
                raise reject(-1102, "dualSidePosition")
            if wanted == self.dual_side:
                raise reject(-4059)
            if any(o.is_open for o in self.orders.values()) or any(
                a.is_open for a in self.algos.values()
            ):
                raise reject(-4067)
            if any(pos.amount for pos in self.positions.values()):
                raise reject(-4068)
            self.dual_side = wanted
            return {"code": 200, "msg": "success"}

    def fee_burn_status(self) -> dict[str, Any]:
        return {"feeBurn": self.fee_burn}

    def set_fee_burn(self, p: Params) -> dict[str, Any]:
        """``POST /fapi/v1/feeBurn``: pay commissions in BNB (at a discount) while BNB lasts."""
        with self.lock:
            if "feeBurn" not in p:
                raise reject(-1102, "feeBurn")
            self.fee_burn = p.boolean("feeBurn")
            return {"code": 200, "msg": "success"}

    def account_config(self) -> dict[str, Any]:
        """``GET /fapi/v1/accountConfig``."""
        with self.lock:
            return {
                "feeTier": 0,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "dualSidePosition": self.dual_side,
                "updateTime": 0,
                "multiAssetsMargin": False,
                "tradeGroupId": -1,
            }

    # ------------------------------------------------------------------ more endpoints
    def open_order(self, p: Params) -> dict[str, Any]:
        """``GET /fapi/v1/openOrder``: one open order; -2013 once it is no longer open."""
        with self.lock:
            order = self._find_order(p, missing_code=-2013)
            if not order.is_open:
                raise reject(-2013)
            return order.to_binance(symbols()[order.symbol])

    def modify_order(self, p: Params) -> dict[str, Any]:
        """``PUT /fapi/v1/order``: a new price and quantity for an open LIMIT order."""
        with self.lock:
            order = self._find_order(p, missing_code=-2013)
            sym = symbols()[order.symbol]
            side = p.required("side")
            qty = p.decimal("quantity", required=True)
            price = p.decimal("price", required=True)
            assert qty is not None and price is not None
            if not order.is_open:
                raise reject(-2013)
            if order.type != "LIMIT":
                raise reject(-1116)
            if side != order.side:
                raise reject(-1130, "side")
            rules.check_price(sym, price)
            rules.check_quantity(sym, qty, market=False)
            if price == order.price and qty == order.orig_qty:
                raise reject(-5027)
            rules.check_percent_price(sym, price, self.mark[sym.name])
            rules.check_notional(sym, qty, price, exempt=order.reduce_only)
            if qty <= order.executed_qty:
                order.status = "CANCELED"
                order.update_time = self.now()
                return order.to_binance(sym, with_time=False)
            current = self.last[sym.name]
            crosses = price >= current if side == "BUY" else price <= current
            if order.time_in_force == "GTX" and crosses:
                raise reject(-5022)
            if order.reduce_only:
                others = order.orig_qty - order.executed_qty
                closable = self._closable(sym.name, side)
                waiting = sum(
                    (
                        o.orig_qty - o.executed_qty
                        for o in self.orders.values()
                        if o.is_open and o.symbol == sym.name and o.reduce_only and o.side == side
                    ),
                    ZERO,
                )
                if waiting - others + qty - order.executed_qty > closable:
                    raise reject(-4118)
            else:
                extra = max(ZERO, qty - order.orig_qty)
                self._check_margin(sym, side, extra, current if crosses else price)
            order.price = price
            order.orig_qty = qty
            order.update_time = self.now()
            if crosses:
                self._take(order, qty - order.executed_qty, self._fill_price(sym, side, current))
            return order.to_binance(sym, with_time=False)

    def position_margin(self, p: Params) -> dict[str, Any]:
        """``POST /fapi/v1/positionMargin``: move margin into (1) or out of (2) an isolated
        position. The wallet is unchanged: margin only moves between cross and isolated."""
        with self.lock:
            sym = p.symbol()
            assert sym is not None
            amount = p.decimal("amount", required=True)
            assert amount is not None
            kind = p.required("type")
            if kind not in ("1", "2"):
                raise reject(-1130, "type")
            if amount <= 0:
                raise reject(-1130, "amount")
            pos = self.positions[sym.name]
            if not self._is_isolated(sym.name) or not pos.amount:
                raise reject(-4051)
            if kind == "1":
                if amount > self.available_balance():
                    raise reject(-4050)
                pos.isolated_wallet += amount
            else:
                # What can leave: the margin above the initial margin the position needs.
                free = pos.isolated_wallet + min(ZERO, self._unrealized(pos))
                free -= self._initial_margin(pos)
                if amount > free:
                    raise reject(-4051)
                pos.isolated_wallet -= amount
            pos.update_time = self.now()
            return {
                "amount": float(amount),
                "code": 200,
                "msg": "Successfully modify position margin.",
                "type": int(kind),
            }

    def adl_quantile(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/adlQuantile``: 0 when flat, else a rank from 1 to 4 by profit."""
        with self.lock:
            sym = p.symbol(required=False)
            rows = []
            for pos in self.positions.values():
                if not pos.amount or (sym is not None and pos.symbol != sym.name):
                    continue
                margin = self._initial_margin(pos) or Decimal(1)
                ratio = self._unrealized(pos) / margin
                rank = 1 if ratio <= 0 else 2 if ratio < 1 else 3 if ratio < 2 else 4
                rows.append(
                    {"symbol": pos.symbol, "adlQuantile": {"LONG": 0, "SHORT": 0, "BOTH": rank}}
                )
            return rows

    def force_orders(self, p: Params) -> list[dict[str, Any]]:
        """``GET /fapi/v1/forceOrders``: the account's liquidation orders, newest last."""
        with self.lock:
            sym = p.symbol(required=False)
            close_type = p.text("autoCloseType")
            if close_type is not None and close_type not in ("LIQUIDATION", "ADL"):
                raise reject(-1130, "autoCloseType")
            start = p.integer("startTime")
            end = p.integer("endTime")
            limit = p.integer("limit", 50) or 50
            if not 1 <= limit <= 100:
                raise reject(-1130, "limit")
            if start is None and end is None:
                end = self.now()
                start = end - WEEK_MS
            rows = [
                o
                for o in self.orders.values()
                if o.type == "LIQUIDATION"
                and close_type != "ADL"
                and (sym is None or o.symbol == sym.name)
                and (start is None or o.time >= start)
                and (end is None or o.time <= end)
            ]
            return [o.to_binance(symbols()[o.symbol]) for o in rows[-limit:]]

    # ------------------------------------------------------------------ debug views
    def debug_positions(self) -> list[dict[str, Any]]:
        """Every non-flat position, for the control API."""
        with self.lock:
            return [self._position_v2(p) for p in self.positions.values() if p.amount]

    def debug_open_orders(self) -> dict[str, list[dict[str, Any]]]:
        """Every open order and algo order, hidden ones included, for the control API."""
        with self.lock:
            return {
                "orders": [
                    o.to_binance(symbols()[o.symbol]) for o in self.orders.values() if o.is_open
                ],
                "algo_orders": [
                    a.to_binance(symbols()[a.symbol]) for a in self.algos.values() if a.is_open
                ],
            }


def _triggered(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Whether a stop or take-profit with ``trigger`` fires at ``price``."""
    if order_type in ("STOP", "STOP_MARKET"):
        return price >= trigger if side == "BUY" else price <= trigger
    return price <= trigger if side == "BUY" else price >= trigger


# Types a client may filter on: the ones written here and the rest of Binance's documented list.
_ALL_INCOME_TYPES = (
    *INCOME_TYPES,
    "WELCOME_BONUS",
    "REFERRAL_KICKBACK",
    "COMMISSION_REBATE",
    "API_REBATE",
    "CONTEST_REWARD",
    "CROSS_COLLATERAL_TRANSFER",
    "OPTIONS_PREMIUM_FEE",
    "OPTIONS_SETTLE_PROFIT",
    "INTERNAL_TRANSFER",
    "AUTO_EXCHANGE",
    "DELIVERED_SETTELMENT",
    "COIN_SWAP_DEPOSIT",
    "COIN_SWAP_WITHDRAW",
    "POSITION_LIMIT_INCREASE_FEE",
    "STRATEGY_UMFUTURES_TRANSFER",
    "FEE_RETURN",
    "BFUSD_REWARD",
)


def _wallet_amount(value: Decimal) -> Decimal:
    """Round an amount to the wallet step (1e-8), as Binance books fees and PnL."""
    return value.quantize(WALLET_STEP, rounding=ROUND_HALF_UP)


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=rounding) * tick


def _next_on_path(start: Decimal, end: Decimal, trigger: Decimal, tick: Decimal) -> Decimal:
    """The first of :data:`PATH_STEPS` points from ``start`` to ``end`` at or beyond ``trigger``."""
    falling = end < start
    for i in range(1, PATH_STEPS + 1):
        point = start + (end - start) * i / PATH_STEPS
        if (point <= trigger) if falling else (point >= trigger):
            rounding = ROUND_FLOOR if falling else ROUND_CEILING
            return _to_tick(point, tick, rounding)
    return end


def _plain_or_zero(value: Decimal) -> str:
    if not value:
        return "0.0"
    return f"{value.quantize(Decimal('1e-8')).normalize():f}"


def _json_param(value: object) -> object:
    """A batch order's JSON value as the string Binance would read from a query."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
