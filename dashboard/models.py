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


class PositionCandles(models.Model):
    """The exchange's candles around one position, fetched once for its page.

    While the position is open they are fetched again at most once a minute, whatever the
    number of views; once a fetch has covered the close they are final.
    """

    position = models.OneToOneField(
        "trading.Position", on_delete=models.CASCADE, related_name="candles"
    )
    interval = models.CharField(max_length=4)
    rows = models.JSONField(
        default=list, help_text="[open time ms, open, high, low, close] per candle."
    )
    fetched_at = models.DateTimeField()
    final = models.BooleanField(
        default=False, help_text="Fetched after the close: never fetched again."
    )

    def __str__(self) -> str:
        return f"candles of position {self.position_id} ({len(self.rows)} x {self.interval})"
