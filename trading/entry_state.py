"""What an entry needs from the exchange, held so that the entry is the first request after the
decision.

An entry needs the symbol flat on the exchange, its mark price (sizing), the exchange's leverage
and margin type for it (written first when they differ from the rules), and the account's equity
and available balance (sizing, free margin). One positionRisk read of the symbol gives the first
four (``SymbolState``). The balance is the last one read (``AccountBalanceHeld``), used while
nothing that moves it can have happened. A trade cycle reads the symbol's state, and the balance
when stale, concurrently with the decision's own market reads (``EntryReadAhead``), so they cost
no round trip after the decision.

Each held value has an explicit bound; past it, it is read again (concurrently with any other
read the entry needs), so a cold entry costs one round trip more, never a wrong size:

- symbol state: at most ``SYMBOL_STATE_MAX_AGE`` seconds from its request being sent to the
  entry being sized. The price then is as fresh as today's (read a few round trips before the
  send), and the entry slippage allowance covers the move until the fill. A position opened by
  hand in that window is the only one the check cannot see; the same window existed before.
- balance: at most ``BALANCE_MAX_AGE`` seconds old, and only while the book has not moved since
  it was read: no order of ours changed, no fill or income recorded, every open position of
  ours OPEN with its stop, and no position of someone else's in the guard's last view. Equity
  moves then only by the open positions' unrealized PnL, which is counted at each one's stop
  (``BALANCE_STOP_FEE`` for the close's fee): the equity sized with is ``min(equity read,
  wallet + every open position's PnL at its stop)``, never above the equity of now while the
  stops hold. With no position open it is the wallet, exactly what a read would return.
  Funding (every 8 h) and transfers by hand within the bound are not seen: funding is
  a few hundredths of a percent of a notional, far inside the post-trade check's tolerance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connection
from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import AccountBalance, ExchangeGateway, SymbolState
from trading.exchange_view import exchange_view_last
from trading.locks import db_write_lock
from trading.models import AccountBalanceHeld, Fill, Income, Order, Position, Symbol

logger = logging.getLogger(__name__)

T = TypeVar("T")

SYMBOL_STATE_MAX_AGE = 2.0  # seconds
BALANCE_MAX_AGE = timedelta(seconds=300)
# The fee of closing an open position at its stop, as a share of the notional: twice Binance's
# highest regular taker fee (0.05 %), so the held equity stays below the real one.
BALANCE_STOP_FEE = Decimal("0.001")
HELD_ID = 1


# --------------------------------------------------------------------------- the symbol
@dataclass(frozen=True)
class HeldSymbolState:
    """A symbol's state and when the request that read it was sent (``time.monotonic``)."""

    state: SymbolState
    sent_at: float

    def age(self) -> float:
        return time.monotonic() - self.sent_at

    @property
    def fresh(self) -> bool:
        return self.age() <= SYMBOL_STATE_MAX_AGE


def symbol_state_read(*, symbol: Symbol, gateway: ExchangeGateway) -> HeldSymbolState:
    """Read the symbol's state (1 request), stamped with when it was sent."""
    sent_at = time.monotonic()
    return HeldSymbolState(gateway.fetch_symbol_state(symbol=symbol.name), sent_at)


class EntryReadAhead:
    """What an entry would need, read while the caller decides: the symbol's state, and the
    balance and account mode when stale, each on a thread of its own with a gateway it builds
    itself (building one costs tens of milliseconds: not on the caller's thread). The
    gateways are handed to the caller's gateway afterwards, for the exits to reuse."""

    def __init__(self, *, symbol: Symbol, gateway: ExchangeGateway) -> None:
        self._gateway = gateway
        self._made: list[ExchangeGateway] = []
        self._state: HeldSymbolState | None = None
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._guarded, args=(job, symbol), name=f"entry-{name}")
            for name, job in (("state", self._read_state), ("account", self._read_account))
        ]
        for thread in self._threads:
            thread.start()

    def _guarded(self, job: Callable[[Symbol], None], symbol: Symbol) -> None:
        try:
            job(symbol)
        except BaseException as e:  # the entry reads again itself; the reason is logged
            self._errors.append(e)
        finally:
            connection.close()

    def _twin(self) -> ExchangeGateway:
        twin = self._gateway.clone()
        self._made.append(twin)
        return twin

    def _read_state(self, symbol: Symbol) -> None:
        self._state = symbol_state_read(symbol=symbol, gateway=self._twin())

    def _read_account(self, symbol: Symbol) -> None:
        stale_balance = balance_held()[0] is None
        stale_mode = not self._gateway.account_mode_fresh()
        if not (stale_balance or stale_mode):
            return
        twin = self._twin()
        if stale_balance:
            balance_read(gateway=twin)
        if stale_mode:
            twin.check_account_mode()

    def result(self) -> HeldSymbolState | None:
        """The symbol's state once read; None when it could not be (the entry reads it)."""
        for thread in self._threads:
            thread.join()
        self._gateway.twins_keep(self._made)
        for error in self._errors:
            logger.info("entry state read ahead failed: %s", error)
        return self._state


# --------------------------------------------------------------------------- the balance
def balance_record(*, balance: AccountBalance, taken_at: datetime) -> None:
    """Hold a balance read whose request was sent at ``taken_at``; never raises."""
    try:
        with db_write_lock:
            AccountBalanceHeld.objects.update_or_create(
                id=HELD_ID,
                defaults={
                    "wallet": balance.wallet,
                    "equity": balance.equity,
                    "available": balance.available,
                    "taken_at": taken_at,
                },
            )
    except Exception:  # a copy for the next entry: losing it costs one read, nothing else
        logger.exception("could not hold the balance read")


def balance_read(*, gateway: ExchangeGateway) -> AccountBalance:
    """Read the balance (1 request) and hold it for the next entry."""
    taken_at = timezone.now()
    balance = gateway.fetch_balance()
    balance_record(balance=balance, taken_at=taken_at)
    return balance


def balance_held(*, now: datetime | None = None) -> tuple[AccountBalance | None, str]:
    """The balance an entry may size with without a read, or (None, why it must read)."""
    now = now or timezone.now()
    held = AccountBalanceHeld.objects.filter(id=HELD_ID).first()
    if held is None:
        return None, "no balance held"
    since = held.taken_at
    if now - since > BALANCE_MAX_AGE:
        return None, f"balance older than {BALANCE_MAX_AGE.total_seconds():.0f} s"
    if (
        Order.objects.filter(updated_at__gte=since).exists()
        or Fill.objects.filter(recorded_at__gte=since).exists()
        or Income.objects.filter(recorded_at__gte=since).exists()
    ):
        return None, "the book moved since the balance was read"
    positions = list(Position.objects.filter(status__in=Position.OPEN_STATUSES))
    at_stop = Decimal(0)
    for p in positions:
        if p.status != Position.Status.OPEN or None in (p.stop_loss_price, p.entry_price):
            return None, f"{p} has no stop to bound its loss"
        sign = 1 if p.side == Position.Side.LONG else -1
        at_stop += (
            min(Decimal(0), sign * p.quantity * (p.stop_loss_price - p.entry_price))
            - p.quantity * p.stop_loss_price * BALANCE_STOP_FEE
        )
    if _others_on_exchange(ours={p.symbol_id for p in positions}):
        return None, "the exchange holds a position that is not ours"
    return (
        AccountBalance(
            wallet=held.wallet,
            equity=min(held.equity, held.wallet + at_stop),
            available=held.available + at_stop,
        ),
        "",
    )


def _others_on_exchange(*, ours: set[int]) -> bool:
    names = set(Symbol.objects.filter(id__in=ours).values_list("name", flat=True))
    return any(name not in names for name in exchange_view_last().positions)


# --------------------------------------------------------------------------- together
@dataclass(frozen=True)
class EntryInputs:
    """What the entry is decided and sized with, and which of it was read now."""

    @property
    def state(self) -> SymbolState:
        return self.held.state

    held: HeldSymbolState
    balance: AccountBalance
    read: tuple[str, ...] = field(default=())  # what had to be read now (and why)


def entry_inputs_gather(
    *, symbol: Symbol, gateway: ExchangeGateway, held: HeldSymbolState | None = None
) -> EntryInputs:
    """The entry's inputs: held where fresh, the rest read now, concurrently (one round trip).

    Raises what the reads raise (``OperatorActionRequired`` for the account mode).
    """
    reads: dict[str, Callable[[ExchangeGateway], Any]] = {}
    why: list[str] = []
    if held is None or not held.fresh:
        reads["state"] = lambda g: symbol_state_read(symbol=symbol, gateway=g)
        why.append("symbol state " + ("not held" if held is None else f"{held.age():.1f} s old"))
    balance, stale = balance_held()
    if balance is None:
        reads["balance"] = lambda g: balance_read(gateway=g)
        why.append(f"balance: {stale}")
    if not gateway.account_mode_fresh():
        reads["mode"] = lambda g: g.check_account_mode()
        why.append("account mode not checked lately")
    if not reads:
        return EntryInputs(held=held, balance=balance)
    results = _concurrently(reads, gateway=gateway)
    if "state" in results:
        held = results["state"]
    if "balance" in results:
        balance = results["balance"]
    assert held is not None and balance is not None
    return EntryInputs(held=held, balance=balance, read=tuple(why))


def _concurrently(
    reads: dict[str, Callable[[ExchangeGateway], Any]], *, gateway: ExchangeGateway
) -> dict[str, Any]:
    """Run the reads at once: the first on ``gateway`` here, each other on a clone in a thread
    (a ccxt client serves one thread). Raises the first failure, the account mode's first (it
    says what the operator must do).
    """
    names = sorted(reads, key=lambda n: n == "mode")
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, g: ExchangeGateway, close: bool) -> None:
        try:
            results[name] = reads[name](g)
        except BaseException as e:
            errors[name] = e
        finally:
            if close:
                connection.close()

    threads = [
        threading.Thread(target=run, args=(name, twin, True), name=f"entry-{name}")
        for name, twin in zip(names[1:], gateway.twins(len(names) - 1), strict=True)
    ]
    for thread in threads:
        thread.start()
    run(names[0], gateway, close=False)
    for thread in threads:
        thread.join()
    for name in sorted(errors, key=lambda n: n != "mode"):
        error = errors[name]
        if isinstance(error, ArenaError):
            raise error
        raise ArenaError(f"{name}: {error}") from error
    return results
