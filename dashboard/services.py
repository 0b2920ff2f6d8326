"""Writes of the dashboard: equity snapshots, one balance request each, kept bounded."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from dashboard.models import EquitySnapshot
from trading.gateway import exchange_gateway
from trading.models import Position

# One snapshot a minute for a week; older ones are deleted so the table never grows unbounded.
SNAPSHOTS_KEPT = 7 * 24 * 60


def equity_snapshot_record(*, keep: int = SNAPSHOTS_KEPT) -> EquitySnapshot:
    """Store the account's equity now (one balance request) and prune to the newest ``keep``.

    Raises the gateway's ``ExchangeError`` when the exchange cannot be read; nothing is stored.
    """
    balance = exchange_gateway().fetch_balance()
    with transaction.atomic():
        snapshot = EquitySnapshot.objects.create(
            time=timezone.now(),
            equity=balance.equity,
            wallet=balance.wallet,
            unrealized_pnl=balance.equity - balance.wallet,
            open_positions=Position.objects.filter(status__in=Position.OPEN_STATUSES).count(),
        )
        equity_snapshots_prune(keep=keep)
    return snapshot


def equity_snapshots_prune(*, keep: int) -> int:
    """Delete all but the newest ``keep`` snapshots; return how many were deleted."""
    boundary = (
        EquitySnapshot.objects.order_by("-time", "-id").values_list("time", "id")[keep : keep + 1]
    ).first()
    if boundary is None:
        return 0
    time, pk = boundary
    deleted, _ = (
        EquitySnapshot.objects.filter(time__lte=time).exclude(time=time, id__gt=pk).delete()
    )
    return deleted
