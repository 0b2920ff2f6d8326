"""The one owner of position and order statuses: a table of legal moves per model, and one
function per model that makes a move.

A move is a conditional UPDATE on the status the caller read (``filter(pk=…, status=old)``), its
row count checked, and a ``StatusChange`` row (from, to, reason, actor) in the same transaction.
A row count of 0 means someone else moved the row first: the function returns False and the
caller's object carries the status the row has now. A move the table does not list raises
``IllegalTransition`` and writes nothing. A "move" to the status the row already has is no move:
it writes the other fields given (conditional on that status still holding) and no event, so
recording the same exchange answer twice is harmless.

The rule, checked by ``tests/trading/test_transitions.py`` over every module of the project:
nothing outside this module assigns ``status`` on a Position or an Order, passes ``status`` to
``update``, ``update_or_create``, ``get_or_create``, ``bulk_*`` or a dict of changes, or saves it
with ``update_fields``. A row may be created elsewhere in its model's initial status (Position
OPENING, Order INTENT: its ``created_at`` is its record); a row born in another status (a
position adopted from the exchange, an order the exchange placed) is created here, by
``position_create`` / ``order_create``, with a ``StatusChange`` from "".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from core.errors import IllegalTransition
from trading.locks import db_write_lock
from trading.models import Order, Position, StatusChange

logger = logging.getLogger(__name__)

PS = Position.Status
OS = Order.Status

# --------------------------------------------------------------------------- positions
POSITION_MOVES: dict[str, frozenset[str]] = {
    PS.OPENING: frozenset(
        {
            PS.OPEN,  # the entry filled (wholly or partly)
            PS.FAILED,  # refused, never reached the exchange, or expired unfilled
            # An entry left OPENING whose position the exchange closed before it was recorded:
            # flattened by the emergency close or the guard (the close order is the record's),
            # so the close is recorded from its fills instead of the fill first.
            PS.CLOSED,
        }
    ),
    PS.OPEN: frozenset(
        {
            PS.CLOSING,  # our close is being sent
            PS.CLOSED,  # closed on the exchange (TP, SL, liquidation), recorded from its fills
        }
    ),
    PS.CLOSING: frozenset(
        {
            # The close did not execute (refused, unfilled, never arrived), filled only in part,
            # or the exchange still holds the position (the guard reopens, protects, retries).
            PS.OPEN,
            PS.CLOSED,  # the exchange is flat
        }
    ),
    PS.CLOSED: frozenset(),
    PS.FAILED: frozenset(),
}
# Statuses a position may be created in: OPENING by an entry (the model's default), OPEN when
# the guard adopts a position found on the exchange without a record here.
POSITION_BORN: frozenset[str] = frozenset({PS.OPENING, PS.OPEN})

# --------------------------------------------------------------------------- orders
# What an exchange answer or lookup can say of an order, parsed by ``order_status_parse``.
_REPORTED = frozenset(
    {OS.OPEN, OS.FILLED, OS.TRIGGERED, OS.CANCELED, OS.EXPIRED, OS.REJECTED, OS.UNKNOWN}
)
ORDER_MOVES: dict[str, frozenset[str]] = {
    OS.INTENT: frozenset(
        {
            OS.SENT,  # marked before the request leaves, so a lost answer is looked up
            # Never sent: written off by reconcile (an entry that never reached the exchange),
            # or withdrawn by a cancel of everything still active in a symbol.
            OS.EXPIRED,
            OS.CANCELED,
        }
    ),
    # The answer, or a lookup by client id, says what became of it; UNKNOWN: the answer was lost.
    OS.SENT: _REPORTED,
    # Looked up again (any report), or sent again under the same client id (a lookup found
    # nothing; the exchange refuses a duplicate id, so it cannot become a second order).
    OS.UNKNOWN: (_REPORTED - {OS.UNKNOWN}) | {OS.SENT},
    OS.OPEN: (_REPORTED - {OS.OPEN})
    # The exchange no longer knows an order recorded open (the guard's lookup found nothing):
    # it is sent again under its own client id.
    | {OS.SENT},
    # A fired stop-loss or take-profit whose fills (those of the market order it became) are read.
    OS.TRIGGERED: frozenset({OS.FILLED}),
    # The real-world races: a cancel acknowledged (or an order given up as unknown to the
    # exchange) while the exchange was filling or triggering it; the exchange's report wins.
    # And how a finished order ended, in the exchange's words, replaces ours: we write CANCELED
    # when we asked for a cancel and EXPIRED when a lookup found nothing (or the exchange
    # expired an exit when the position went flat); both are final and filled what they filled.
    OS.CANCELED: frozenset({OS.FILLED, OS.TRIGGERED, OS.EXPIRED}),
    OS.EXPIRED: frozenset({OS.FILLED, OS.TRIGGERED, OS.CANCELED}),
    OS.FILLED: frozenset(),
    OS.REJECTED: frozenset(),
}
# Statuses an order may be created in: INTENT (stored before it is sent, the model's default),
# FILLED for an order the exchange (a liquidation) or a person placed, recorded with its fills.
ORDER_BORN: frozenset[str] = frozenset({OS.INTENT, OS.FILLED})


def position_move_allowed(old: str, new: str) -> bool:
    """Whether the table lets a position go from ``old`` to ``new`` (the same status: yes)."""
    return old == new or new in POSITION_MOVES.get(old, frozenset())


def order_move_allowed(old: str, new: str) -> bool:
    """Whether the table lets an order go from ``old`` to ``new`` (the same status: yes)."""
    return old == new or new in ORDER_MOVES.get(old, frozenset())


# --------------------------------------------------------------------------- moves
def position_transition(
    position: Position,
    to: str,
    *,
    reason: str,
    actor: str,
    fields: Mapping[str, object] | None = None,
    follow: bool = False,
) -> bool:
    """Move ``position`` from the status it was read in to ``to``, writing ``fields`` with it.

    False when the row had moved meanwhile (someone else got there first; ``position.status``
    is then the row's); raises ``IllegalTransition`` for a move the table does not list. With
    ``follow`` (the caller brings the exchange's word, e.g. "flat"), the move is then made from
    the row's current status when the table allows it.
    """
    return _move(
        position,
        to,
        allowed=position_move_allowed,
        reason=reason,
        actor=actor,
        fields=fields,
        follow=follow,
    )


def order_transition(
    order: Order,
    to: str,
    *,
    reason: str = "",
    actor: str = "bot",
    fields: Mapping[str, object] | None = None,
    follow: bool = False,
) -> bool:
    """Move ``order`` from the status it was read in to ``to``, writing ``fields`` with it.

    False when the row had moved meanwhile. With ``follow`` (the caller brings the exchange's
    word: an answer or a lookup), the move is then made from the row's current status when the
    table allows it: a stale answer never takes a finished order back, a fill still lands on a
    row a cancel marked a moment earlier. Raises ``IllegalTransition`` for a move the table
    does not list from the status the caller read.
    """
    changes = {"updated_at": timezone.now(), **(fields or {})}
    return _move(
        order,
        to,
        allowed=order_move_allowed,
        reason=reason,
        actor=actor,
        fields=changes,
        follow=follow,
    )


def orders_transition(
    orders: QuerySet[Order] | Iterable[Order],
    to: str,
    *,
    reason: str,
    actor: str,
    fields: Mapping[str, object] | None = None,
) -> list[Order]:
    """Move each of ``orders`` to ``to``, as one ``filter(status__in=…).update(…)`` would: an
    order another writer moved since it was read is moved from where it is now when the table
    allows it, else left as it is. Returns the orders moved."""
    return [
        order
        for order in orders
        if order.status != to
        and order_transition(order, to, reason=reason, actor=actor, fields=fields, follow=True)
    ]


def position_create(*, status: str, reason: str, actor: str, **fields: object) -> Position:
    """Create a position in ``status`` (one of ``POSITION_BORN``) with its ``StatusChange``."""
    if status not in POSITION_BORN:
        raise IllegalTransition(f"a position is not created {status}")
    with db_write_lock, transaction.atomic():
        position = Position.objects.create(status=status, **fields)
        _record(position, "", status, reason=reason, actor=actor)
    return position


def order_create(*, status: str, reason: str, actor: str, **fields: object) -> Order:
    """Create an order in ``status`` (one of ``ORDER_BORN``) with its ``StatusChange``."""
    if status not in ORDER_BORN:
        raise IllegalTransition(f"an order is not created {status}")
    with db_write_lock, transaction.atomic():
        order = Order.objects.create(status=status, **fields)
        _record(order, "", status, reason=reason, actor=actor)
    return order


# At most this many tries when following a row that keeps moving: a bound, never reached in
# practice (a row moves a handful of times in its life).
_FOLLOW_TRIES = 4


def _move(
    row: Position | Order,
    to: str,
    *,
    allowed,
    reason: str,
    actor: str,
    fields: Mapping[str, object] | None,
    follow: bool,
) -> bool:
    model = type(row)
    old = row.status
    if not allowed(old, to):
        raise IllegalTransition(f"{model.__name__} {row.pk}: {old} -> {to} is not a legal move")
    changes = {**(fields or {}), "status": to}
    for _ in range(_FOLLOW_TRIES):
        with db_write_lock, transaction.atomic():
            moved = model.objects.filter(pk=row.pk, status=old).update(**changes)
            if moved and old != to:
                _record(row, old, to, reason=reason, actor=actor)
        if moved:
            for name, value in changes.items():
                setattr(row, name, value)
            if old != to:
                logger.debug(
                    "%s %s: %s -> %s (%s): %s", model.__name__, row.pk, old, to, actor, reason
                )
            return True
        current = model.objects.filter(pk=row.pk).values_list("status", flat=True).first()
        if current is None:
            return False
        row.status = current
        if not follow or current == old or not allowed(current, to):
            return False
        old = current
    return False


def _record(row: Model, old: str, new: str, *, reason: str, actor: str) -> None:
    StatusChange.objects.create(
        position=row if isinstance(row, Position) else None,
        order=row if isinstance(row, Order) else None,
        from_status=old,
        to_status=new,
        reason=reason[:255],
        actor=actor[:150],
    )
