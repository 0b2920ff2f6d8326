"""Dashboard data: the account's equity over time, sampled by a periodic task."""

from __future__ import annotations

from django.db import models

MONEY = {"max_digits": 24, "decimal_places": 10}


class EquitySnapshot(models.Model):
    """The account in USDT at one moment, from one balance request."""

    time = models.DateTimeField(db_index=True)
    equity = models.DecimalField(**MONEY, help_text="Margin balance: wallet + unrealized PnL.")
    wallet = models.DecimalField(**MONEY, help_text="Wallet balance: deposits + realized PnL.")
    unrealized_pnl = models.DecimalField(**MONEY, help_text="Equity minus wallet.")
    open_positions = models.PositiveSmallIntegerField(
        default=0, help_text="Positions of this bot open at that moment (from the database)."
    )

    class Meta:
        ordering = ["-time"]
        get_latest_by = "time"

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M} equity {self.equity.normalize():f}"
