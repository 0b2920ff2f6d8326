"""Risk rules: how much to commit per trade, leverage, exits, limits."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

PERCENT = {"max_digits": 7, "decimal_places": 4}
MONEY = {"max_digits": 24, "decimal_places": 10}


class RiskProfile(models.Model):
    """A set of risk rules. One profile is active; a symbol may name its own instead."""

    class MarginType(models.TextChoices):
        ISOLATED = "ISOLATED", "Isolated"
        CROSSED = "CROSSED", "Cross"

    name = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(
        default=False,
        help_text="The profile used by every symbol without its own. Exactly one is active.",
    )
    leverage = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(125)],
        help_text="Leverage set on the exchange before every entry (1 to the symbol's maximum).",
    )
    margin_type = models.CharField(
        max_length=8,
        choices=MarginType.choices,
        default=MarginType.ISOLATED,
        help_text="Margin type set on the exchange before every entry.",
    )
    risk_pct = models.DecimalField(
        **PERCENT,
        default=Decimal("30"),
        help_text="Share of account equity committed as initial margin per trade, in percent "
        "(30 = 30 %). Position notional = margin x leverage.",
    )
    max_risk_usd = models.DecimalField(
        **MONEY,
        default=Decimal("600"),
        help_text="Cap on that margin per trade, in USDT: margin = min(equity x risk_pct, this).",
    )
    take_profit_pct = models.DecimalField(
        **PERCENT,
        default=Decimal("0.5"),
        help_text="Take-profit distance from the entry price, in percent (0.5 = 0.5 %).",
    )
    stop_loss_pct = models.DecimalField(
        **PERCENT,
        default=Decimal("0.3"),
        help_text="Stop-loss distance from the entry price, in percent (0.3 = 0.3 %).",
    )
    min_holding_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Seconds a position is held before a signal may close it. Never delays a "
        "stop-loss, take-profit, risk or emergency exit.",
    )
    max_open_positions = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Most positions open at once across all symbols.",
    )
    partial_close_tolerance_pct = models.DecimalField(
        **PERCENT,
        default=Decimal("10"),
        help_text="A position's margin may exceed the allowed margin by this many percent "
        "before the excess is partially closed.",
    )
    entry_slippage_pct = models.DecimalField(
        **PERCENT,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("5"))],
        help_text="Sizing assumes a market entry fills up to this many percent above the price "
        "read before it, so the margin stays within the cap on the fill price (0-5). 0 sizes on "
        "the price read: a fill above it may use a little more margin than the cap.",
    )
    daily_loss_limit_usd = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        help_text="Realized loss in one UTC day, in USDT, that halts trading. Empty = no limit.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_risk_profile"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (active)' if self.is_active else ''}"

    def validate_constraints(self, exclude: set[str] | None = None) -> None:
        # Activating a profile is allowed: ``rule_save`` deactivates the others in the same
        # transaction, and the database constraint still guards every other writer.
        exclude = set(exclude or ()) | {"is_active"}
        super().validate_constraints(exclude=exclude)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.risk_pct is not None and not (Decimal("0") < self.risk_pct <= Decimal("100")):
            errors["risk_pct"] = "Must be above 0 and at most 100 percent."
        if self.max_risk_usd is not None and self.max_risk_usd <= 0:
            errors["max_risk_usd"] = "Must be positive."
        if self.take_profit_pct is not None and not (
            Decimal("0") < self.take_profit_pct <= Decimal("50")
        ):
            errors["take_profit_pct"] = "Must be above 0 and at most 50 percent."
        if self.stop_loss_pct is not None and not (
            Decimal("0") < self.stop_loss_pct <= Decimal("50")
        ):
            errors["stop_loss_pct"] = "Must be above 0 and at most 50 percent."
        if self.partial_close_tolerance_pct is not None and not (
            Decimal("0") <= self.partial_close_tolerance_pct <= Decimal("100")
        ):
            errors["partial_close_tolerance_pct"] = "Must be between 0 and 100 percent."
        if self.daily_loss_limit_usd is not None and self.daily_loss_limit_usd <= 0:
            errors["daily_loss_limit_usd"] = "Must be positive, or empty for no limit."
        if self.leverage is not None and self.pk and "leverage" not in errors:
            too_high = [s.name for s in self.symbols.all() if self.leverage > s.max_leverage]
            if too_high:
                errors["leverage"] = (
                    f"Leverage {self.leverage}x exceeds the maximum of {', '.join(too_high)}."
                )
        if self.leverage is not None and self.is_active and "leverage" not in errors:
            from trading.models import Symbol

            too_high = [
                f"{s.name} ({s.max_leverage}x)"
                for s in Symbol.objects.filter(enabled=True, risk_profile__isnull=True)
                if self.leverage > s.max_leverage
            ]
            if too_high:
                errors["leverage"] = (
                    f"Leverage {self.leverage}x exceeds the maximum of {', '.join(too_high)}."
                )
        if errors:
            raise ValidationError(errors)


class RuleChange(models.Model):
    """One changed field of a rule: who, when, old and new value."""

    model = models.CharField(max_length=64, help_text="Which kind of rule, e.g. risk.riskprofile.")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    field = models.CharField(max_length=64)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    changed_by = models.CharField(max_length=150)
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.object_repr}.{self.field}: {self.old_value} → {self.new_value}"
