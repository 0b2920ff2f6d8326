"""Risk rules: how much to commit per trade, leverage, exits, limits."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

PERCENT = {"max_digits": 7, "decimal_places": 4}
MONEY = {"max_digits": 24, "decimal_places": 10}

# Upper bounds of the rules. Binance's highest leverage is 125x; the others are far beyond any
# sane setting and exist so that a typo (an extra six zeros) is refused, not obeyed.
MAX_LEVERAGE = 125
MAX_USD = Decimal("1000000000")
MAX_HOLDING_SECONDS = 7 * 24 * 3600
MAX_OPEN_POSITIONS = 100
# Isolated liquidation comes at roughly 100/leverage % from the entry, less the maintenance
# margin rate (0.4-1 % in Binance's first brackets); a stop must trigger before it.
MAINTENANCE_MARGIN_PCT = Decimal("0.5")


def liquidation_distance_pct(*, leverage: int) -> Decimal:
    """How far (in %) the price may move against a position before liquidation, conservatively."""
    return Decimal(100) / Decimal(leverage) - MAINTENANCE_MARGIN_PCT


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
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LEVERAGE)],
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
        validators=[MaxValueValidator(MAX_HOLDING_SECONDS)],
        help_text="Seconds a position is held before a signal may close it. Never delays a "
        "stop-loss, take-profit, risk or emergency exit.",
    )
    max_open_positions = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_OPEN_POSITIONS)],
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
            ),
            # What must never be stored, whoever writes (admin, fixture, shell, SQL).
            models.CheckConstraint(
                condition=Q(leverage__gte=1, leverage__lte=MAX_LEVERAGE),
                name="risk_profile_leverage_in_range",
            ),
            models.CheckConstraint(
                condition=Q(risk_pct__gt=0, risk_pct__lte=100),
                name="risk_profile_risk_pct_in_range",
            ),
            models.CheckConstraint(
                condition=Q(max_risk_usd__gt=0, max_risk_usd__lte=MAX_USD),
                name="risk_profile_max_risk_usd_in_range",
            ),
            models.CheckConstraint(
                condition=Q(take_profit_pct__gt=0, take_profit_pct__lte=50),
                name="risk_profile_take_profit_pct_in_range",
            ),
            models.CheckConstraint(
                condition=Q(stop_loss_pct__gt=0, stop_loss_pct__lte=50),
                name="risk_profile_stop_loss_pct_in_range",
            ),
            models.CheckConstraint(
                condition=Q(max_open_positions__gte=1, max_open_positions__lte=MAX_OPEN_POSITIONS),
                name="risk_profile_max_open_positions_in_range",
            ),
            models.CheckConstraint(
                condition=Q(min_holding_seconds__lte=MAX_HOLDING_SECONDS),
                name="risk_profile_min_holding_seconds_in_range",
            ),
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
        if self.max_risk_usd is not None and not (0 < self.max_risk_usd <= MAX_USD):
            errors["max_risk_usd"] = (
                "Must be positive." if self.max_risk_usd <= 0 else f"At most {MAX_USD} USDT."
            )
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
        if self.daily_loss_limit_usd is not None and not (0 < self.daily_loss_limit_usd <= MAX_USD):
            errors["daily_loss_limit_usd"] = (
                f"Must be positive and at most {MAX_USD} USDT, or empty for no limit."
            )
        if (
            self.leverage
            and 1 <= self.leverage <= MAX_LEVERAGE
            and self.stop_loss_pct is not None
            and "stop_loss_pct" not in errors
            and self.stop_loss_pct >= liquidation_distance_pct(leverage=self.leverage)
        ):
            distance = liquidation_distance_pct(leverage=self.leverage).quantize(Decimal("0.01"))
            errors["stop_loss_pct"] = (
                f"A {self.stop_loss_pct.normalize():f} % stop is beyond liquidation at "
                f"{self.leverage}x (about {distance} % from the entry): lower the stop or the "
                "leverage."
            )
        if self.leverage is not None and self.pk and "leverage" not in errors:
            too_high = [s.name for s in self.symbols.all() if self.leverage > s.max_leverage]
            if too_high:
                errors["leverage"] = (
                    f"Leverage {self.leverage}x exceeds the maximum of {', '.join(too_high)}."
                )
        if self.leverage is not None and self.is_active and "leverage" not in errors:
            # Symbols without a profile of their own use the active one. The symbol model is
            # reached through its relation to this one: risk sits below trading and imports
            # nothing from it.
            symbol_model = self._meta.get_field("symbols").related_model
            too_high = [
                f"{s.name} ({s.max_leverage}x)"
                for s in symbol_model.objects.filter(enabled=True, risk_profile__isnull=True)
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
