"""Leases and heartbeats: which process does a job now, and what each finished pass cost."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F, Q
from django.utils import timezone

from core.models import Heartbeat, Lease


# --- leases ----------------------------------------------------------------------------------
def lease_claim(*, name: str, owner: str, seconds: int) -> bool:
    """Take the lease ``name`` for ``seconds`` unless a live holder has it; count a skip if so."""
    now = timezone.now()
    free = Q(expires_at__isnull=True) | Q(expires_at__lte=now)
    # The conditional UPDATE is the lock: of two passes racing here exactly one updates a row.
    claim = {"owner": owner, "expires_at": now + timedelta(seconds=seconds)}
    if Lease.objects.filter(free, name=name).update(**claim):
        return True
    _, created = Lease.objects.get_or_create(name=name)
    if created and Lease.objects.filter(free, name=name).update(**claim):
        return True
    Lease.objects.filter(name=name).update(skipped_passes=F("skipped_passes") + 1)
    return False


def lease_release(*, name: str, owner: str, error: str = "") -> str | None:
    """Give the lease back and record the pass's error (empty when it succeeded).

    Returns ``"new"`` when the error differs from the last pass's, ``"cleared"`` when a pass
    succeeded after a failed one, and None when nothing changed, so callers log transitions
    once instead of every five seconds.
    """
    error = error[:255]
    changed = (
        Lease.objects.filter(name=name, owner=owner)
        .exclude(last_error=error)
        .update(last_error=error)
        > 0
    )
    Lease.objects.filter(name=name, owner=owner).update(owner="", expires_at=None)
    if not changed:
        return None
    return "new" if error else "cleared"


def lease_hold(*, name: str, owner: str, seconds: float) -> None:
    """Say that ``owner`` is alive and doing ``name``'s work for the next ``seconds`` (renewed by
    a long-running process on every loop; ``lease_let_go`` when it stops)."""
    Lease.objects.update_or_create(
        name=name,
        defaults={"owner": owner, "expires_at": timezone.now() + timedelta(seconds=seconds)},
    )


def lease_let_go(*, name: str, owner: str) -> None:
    """End ``owner``'s hold on ``name`` at once (a clean stop)."""
    Lease.objects.filter(name=name, owner=owner).update(owner="", expires_at=None)


def lease_held(*, name: str) -> bool:
    """Whether someone holds ``name`` right now."""
    return Lease.objects.filter(name=name, expires_at__gt=timezone.now()).exclude(owner="").exists()


def lease_skipped_passes(*, name: str) -> int:
    lease = Lease.objects.filter(name=name).first()
    return lease.skipped_passes if lease else 0


# --- heartbeats ------------------------------------------------------------------------------
def heartbeat_record(
    *,
    process: str,
    started_at: datetime,
    finished_at: datetime,
    requests: int,
    weight: int,
    positions: int = 0,
    actions: int = 0,
    error: str = "",
    keep_minutes: int,
) -> Heartbeat:
    """Store one finished pass and delete this process's heartbeats older than the window."""
    heartbeat = Heartbeat.objects.create(
        process=process,
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=max(0, int((finished_at - started_at).total_seconds() * 1000)),
        requests=requests,
        weight=weight,
        positions=positions,
        actions=actions,
        ok=not error,
        error=error[:255],
    )
    cutoff = finished_at - timedelta(minutes=keep_minutes)
    Heartbeat.objects.filter(process=process, finished_at__lt=cutoff).delete()
    return heartbeat
