"""Locks of the order path.

``symbol_lock`` is a lease on a ``SymbolLock`` row, claimed with a conditional UPDATE and checked
by its row count, so it holds across processes and machines on SQLite and PostgreSQL alike. It is
committed state, not a transaction kept open over HTTP calls: order intents must be committed
before they are sent. A crashed worker's lease expires; one of a dead process on this machine is
taken at once (its pid is in the owner).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.db import db_write_lock
from trading.models import SymbolLock

DEFAULT_TTL_SECONDS = 120.0


_held = threading.local()


class SymbolBusy(Exception):
    """Another worker holds the symbol's lease: this one does nothing for the symbol now."""


def _owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@contextmanager
def symbol_lock(
    symbol_id: int, ttl: float = DEFAULT_TTL_SECONDS, *, wait_seconds: float = 0.0
) -> Iterator[str]:
    """Hold the symbol's lease for the block; raise ``SymbolBusy`` when someone else has it.

    Re-entrant within one thread (a trade cycle holds it and calls ``position_open``). The lease
    expires after ``ttl`` seconds, so a worker that died holding it blocks the symbol only that
    long; keep ``ttl`` above the longest exchange call sequence (retry budget included). With
    ``wait_seconds`` (closes), the claim is retried that long before giving up.
    """
    held: dict[int, str] = getattr(_held, "locks", None) or {}
    _held.locks = held
    if symbol_id in held:
        yield held[symbol_id]
        return
    owner = _owner()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            _claim(symbol_id=symbol_id, owner=owner, ttl=ttl)
            break
        except SymbolBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    held[symbol_id] = owner
    try:
        yield owner
    finally:
        del held[symbol_id]
        # Only our own lease is released: if it expired and someone else claimed it, theirs stays.
        SymbolLock.objects.filter(symbol_id=symbol_id, owner=owner).update(
            owner="", expires_at=None
        )


def _claim(*, symbol_id: int, owner: str, ttl: float) -> None:
    _ensure_row(symbol_id)
    now = timezone.now()
    claimed = (
        SymbolLock.objects.filter(symbol_id=symbol_id)
        .filter(Q(owner="") | Q(expires_at__lt=now))
        .update(owner=owner, expires_at=now + timedelta(seconds=ttl))
    )
    dead = _dead_holder(symbol_id) if claimed != 1 else None
    if dead:
        # The holder was a process of this machine that no longer exists (killed, crashed):
        # its lease is taken now instead of after its TTL. Conditional on that very owner, so
        # of two workers noticing at once only one takes it.
        claimed = SymbolLock.objects.filter(symbol_id=symbol_id, owner=dead).update(
            owner=owner, expires_at=now + timedelta(seconds=ttl)
        )
    if claimed != 1:
        # Another worker got there first (PostgreSQL re-evaluates the WHERE after waiting for
        # its row lock, so of two racing claims exactly one updates a row).
        current = SymbolLock.objects.filter(symbol_id=symbol_id).values_list("owner", "expires_at")
        holder, expires = current.first() or ("?", None)
        raise SymbolBusy(f"symbol {symbol_id} is locked by {holder} until {expires}")


def symbol_lock_held_by_live_process(symbol_id: int) -> bool:
    """Whether a cycle that is still running holds ``symbol_id``'s lease (an unexpired lease of a
    process that exists, as far as this host can tell)."""
    held = SymbolLock.objects.filter(symbol_id=symbol_id, expires_at__gt=timezone.now()).exclude(
        owner=""
    )
    return held.exists() and _dead_holder(symbol_id) is None


def _dead_holder(symbol_id: int) -> str | None:
    """The lease's owner when it is a process of this host that is gone, else None.

    Owners are ``host:pid:nonce``. A pid of another host cannot be checked (its lease runs out
    by TTL); a pid reused by another process here looks alive, which only means waiting.
    """
    holder = SymbolLock.objects.filter(symbol_id=symbol_id).values_list("owner", flat=True).first()
    host, _, rest = (holder or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:30] or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return None  # another thread of this process: alive by definition
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return holder
    except PermissionError:
        return None  # exists, owned by another user
    return holder if _is_zombie(pid) else None


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped still answers signal 0; /proc tells it is dead."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _ensure_row(symbol_id: int) -> None:
    if SymbolLock.objects.filter(symbol_id=symbol_id).exists():
        return
    try:
        with transaction.atomic():
            SymbolLock.objects.create(symbol_id=symbol_id)
    except IntegrityError:
        pass  # created by a racing worker at the same moment: the row is what we needed


def lease_is_ours(symbol_id: int) -> bool:
    """True while this thread holds the symbol's lease and nobody has taken it over.

    A holder checks this before each order it sends: an emergency close takes leases over
    (``symbol_leases_take_over``) instead of waiting for them, and the holder it pre-empted must
    then stop sending for that symbol.
    """
    owner = (getattr(_held, "locks", None) or {}).get(symbol_id)
    if owner is None:
        return False
    return SymbolLock.objects.filter(
        symbol_id=symbol_id, owner=owner, expires_at__gt=timezone.now()
    ).exists()


@contextmanager
def symbol_leases_take_over(
    symbol_ids: list[int], ttl: float = DEFAULT_TTL_SECONDS
) -> Iterator[str]:
    """Take the leases of ``symbol_ids`` whoever holds them, for the emergency close.

    The claim is unconditional: an emergency cannot wait for a trade cycle in a 60 s signal call
    or a slow read. The pre-empted holder sees the lease lost at its next ``lease_is_ours`` check
    and sends nothing more. Within the block this thread holds every lease (re-entrant, like
    ``symbol_lock``); at the end only the leases still ours are released.
    """
    held: dict[int, str] = getattr(_held, "locks", None) or {}
    _held.locks = held
    owner = _owner()
    taken = [symbol_id for symbol_id in symbol_ids if symbol_id not in held]
    for symbol_id in taken:
        _ensure_row(symbol_id)
        with db_write_lock:
            SymbolLock.objects.filter(symbol_id=symbol_id).update(
                owner=owner, expires_at=timezone.now() + timedelta(seconds=ttl)
            )
        held[symbol_id] = owner
    try:
        yield owner
    finally:
        for symbol_id in taken:
            held.pop(symbol_id, None)
            with db_write_lock:
                SymbolLock.objects.filter(symbol_id=symbol_id, owner=owner).update(
                    owner="", expires_at=None
                )
