"""Trading data: symbols and their filters, the kill switch, strategies, orders, positions.

Models hold data and the invariants of a single row; the work is done in services.
"""

from __future__ import annotations

import math
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.formatting import quantity_text
from exchange.rounding import SymbolFilters
from risk.models import RiskProfile

PRICE = {"max_digits": 24, "decimal_places": 10}
QUANTITY = {"max_digits": 24, "decimal_places": 10}
MONEY = {"max_digits": 24, "decimal_places": 10}


# Bounds of the rules stored here; see ``risk.models`` for why every number has one.
MAX_LEVERAGE = 125
MAX_PRECISION = 10  # the decimal places the price and quantity columns keep
MAX_CYCLE_INTERVAL_SECONDS = 24 * 3600
MAX_LLM_TIMEOUT_SECONDS = 60
MAX_PARAMETERS = 20
MAX_PARAMETER_TEXT = 100
MAX_PARAMETER_NUMBER = 1_000_000


def _is_multiple(value: Decimal, step: Decimal) -> bool:
    return step > 0 and value % step == 0


def _plain(value: Decimal) -> Decimal:
    """Drop the column's padding zeros (0.0010000000 -> 0.001, 1000.0000000000 -> 1000), so
    refusal reasons read like Binance's filters."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


class Symbol(models.Model):
    """An exchange symbol and the filters its orders must satisfy."""

    name = models.CharField(
        max_length=32, unique=True, help_text="Exchange symbol, e.g. BTCUSDT (upper case)."
    )
    base_asset = models.CharField(max_length=16, help_text="Base asset, e.g. BTC.")
    quote_asset = models.CharField(max_length=16, default="USDT", help_text="Quote asset: USDT.")
    enabled = models.BooleanField(
        default=False, help_text="Only enabled symbols get trade cycles and are watched."
    )
    tick_size = models.DecimalField(
        **PRICE, help_text="PRICE_FILTER tickSize: every price is a multiple of it."
    )
    step_size = models.DecimalField(
        **QUANTITY, help_text="LOT_SIZE stepSize: every limit or stop quantity is a multiple of it."
    )
    min_qty = models.DecimalField(**QUANTITY, help_text="LOT_SIZE minQty.")
    max_qty = models.DecimalField(**QUANTITY, help_text="LOT_SIZE maxQty.")
    market_step_size = models.DecimalField(
        **QUANTITY, help_text="MARKET_LOT_SIZE stepSize: market order quantities step."
    )
    market_min_qty = models.DecimalField(**QUANTITY, help_text="MARKET_LOT_SIZE minQty.")
    market_max_qty = models.DecimalField(**QUANTITY, help_text="MARKET_LOT_SIZE maxQty.")
    min_notional = models.DecimalField(
        **MONEY,
        help_text="MIN_NOTIONAL notional: price x quantity of a new order must reach it "
        "(reduce-only and close-position orders are exempt).",
    )
    price_precision = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(MAX_PRECISION)],
        help_text="pricePrecision: the most decimals a price may carry (not the tick).",
    )
    quantity_precision = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(MAX_PRECISION)],
        help_text="quantityPrecision: the most decimals a quantity may carry (not the step).",
    )
    max_leverage = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LEVERAGE)],
        help_text="Highest leverage in the symbol's first leverage bracket.",
    )
    filters_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When the filters were last read from the exchange."
    )
    risk_profile = models.ForeignKey(
        "risk.RiskProfile",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="symbols",
        help_text="Overrides the active risk profile for this symbol; empty = the active one.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # What must never be stored, whoever writes (admin, fixture, shell, SQL).
            models.CheckConstraint(
                condition=Q(tick_size__gt=0, step_size__gt=0, market_step_size__gt=0),
                name="symbol_steps_positive",
            ),
            models.CheckConstraint(
                condition=Q(min_qty__gt=0, market_min_qty__gt=0, min_notional__gte=0),
                name="symbol_minimums_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_qty__gte=models.F("min_qty"))
                & Q(market_max_qty__gte=models.F("market_min_qty")),
                name="symbol_max_qty_not_below_min_qty",
            ),
            models.CheckConstraint(
                condition=Q(max_leverage__gte=1, max_leverage__lte=MAX_LEVERAGE),
                name="symbol_max_leverage_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def filters(self) -> SymbolFilters:
        """The filters every order of this symbol must satisfy, for the rounding module."""
        return SymbolFilters(
            symbol=self.name,
            tick_size=_plain(self.tick_size),
            step_size=_plain(self.step_size),
            min_qty=_plain(self.min_qty),
            max_qty=_plain(self.max_qty),
            market_step_size=_plain(self.market_step_size),
            market_min_qty=_plain(self.market_min_qty),
            market_max_qty=_plain(self.market_max_qty),
            min_notional=_plain(self.min_notional),
            price_precision=self.price_precision,
            quantity_precision=self.quantity_precision,
        )

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.name and self.name != self.name.upper():
            errors["name"] = "Symbols are upper case, e.g. BTCUSDT."
        for field in ("tick_size", "step_size", "market_step_size"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                errors[field] = "Must be positive."
        for field in ("min_qty", "max_qty", "market_min_qty", "market_max_qty"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                errors[field] = "Must be positive."
        if self.min_notional is not None and self.min_notional < 0:
            errors["min_notional"] = "Must not be negative."
        if "step_size" not in errors and self.step_size and self.min_qty:
            if not _is_multiple(self.min_qty, self.step_size):
                errors["min_qty"] = (
                    f"minQty {_plain(self.min_qty)} is not a multiple of "
                    f"stepSize {_plain(self.step_size)}."
                )
        if self.min_qty and self.max_qty and self.min_qty > self.max_qty:
            errors["max_qty"] = "maxQty must not be below minQty."
        if "market_step_size" not in errors and self.market_step_size and self.market_min_qty:
            if not _is_multiple(self.market_min_qty, self.market_step_size):
                errors["market_min_qty"] = (
                    f"market minQty {_plain(self.market_min_qty)} is not a multiple of "
                    f"market stepSize {_plain(self.market_step_size)}."
                )
        if (
            self.market_min_qty
            and self.market_max_qty
            and self.market_min_qty > self.market_max_qty
        ):
            errors["market_max_qty"] = "Market maxQty must not be below market minQty."
        if self.quote_asset and self.base_asset and self.name and "name" not in errors:
            if self.name != f"{self.base_asset}{self.quote_asset}":
                errors["name"] = (
                    f"Expected {self.base_asset}{self.quote_asset} from base and quote."
                )
        if (
            self.max_leverage
            and self.enabled
            and self.risk_profile_id
            and "max_leverage" not in errors
        ):
            # Only an enabled symbol trades: a disabled one may wait for its profile to fit.
            if self.risk_profile.leverage > self.max_leverage:
                errors["risk_profile"] = (
                    f"Profile {self.risk_profile.name} uses {self.risk_profile.leverage}x, "
                    f"above this symbol's maximum of {self.max_leverage}x."
                )
        if self.max_leverage and self.enabled and not self.risk_profile_id:
            # The other side of RiskProfile.clean: the active profile's leverage must fit every
            # enabled symbol that uses it, whether the symbol or the profile changes.
            active = RiskProfile.objects.filter(is_active=True).first()
            if active is not None and active.leverage > self.max_leverage:
                errors.setdefault(
                    "max_leverage",
                    f"The active profile {active.name} uses {active.leverage}x, above this "
                    f"maximum of {self.max_leverage}x: lower the profile's leverage, give this "
                    "symbol a profile of its own, or leave it disabled.",
                )
        if errors:
            raise ValidationError(errors)


class TradingSwitch(models.Model):
    """The single kill switch. Off means no new entries; exits and cancels still go through."""

    enabled = models.BooleanField(
        default=True, help_text="Off stops every new entry at once; closes and stops still work."
    )
    reason = models.CharField(max_length=255, blank=True, help_text="Why it was last changed.")
    changed_by = models.CharField(max_length=150, blank=True, help_text="Who changed it last.")
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "trading switch"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="single_trading_switch")]

    def __str__(self) -> str:
        return "Trading ENABLED" if self.enabled else f"Trading HALTED ({self.reason})"

    @classmethod
    def load(cls) -> TradingSwitch:
        switch, _ = cls.objects.get_or_create(id=1)
        return switch


class Strategy(models.Model):
    """Which signal agent decides for a symbol, with what parameters and how often."""

    class Agent(models.TextChoices):
        RULE_BASED = "rule", "Rule-based (EMA crossover + RSI filter)"
        LLM = "llm", "LLM (OpenAI-compatible chat completions)"
        MANUAL = "manual", "Manual (signals entered in the admin)"

    symbol = models.OneToOneField(Symbol, on_delete=models.CASCADE, related_name="strategy")
    agent = models.CharField(
        max_length=16, choices=Agent.choices, default=Agent.RULE_BASED, help_text="Signal source."
    )
    interval_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(10), MaxValueValidator(MAX_CYCLE_INTERVAL_SECONDS)],
        help_text="Seconds between two trade cycles of this symbol (10 to 86400).",
    )
    candle_interval = models.CharField(
        max_length=8, default="1m", help_text="Candle interval the agent reads, e.g. 1m, 5m."
    )
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text='Agent parameters, e.g. {"ema_fast": 9, "ema_slow": 21, "rsi_period": 14, '
        '"rsi_overbought": 70, "rsi_oversold": 30}.',
    )
    llm_model = models.CharField(max_length=100, blank=True, help_text="LLM model name.")
    llm_timeout_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LLM_TIMEOUT_SECONDS)],
        help_text="LLM request timeout: the whole request, in seconds (1 to 60).",
    )

    class Meta:
        verbose_name_plural = "strategies"
        constraints = [
            models.CheckConstraint(
                # The form asks for at least 10 s; the database refuses what would break Beat.
                condition=Q(
                    interval_seconds__gte=1, interval_seconds__lte=MAX_CYCLE_INTERVAL_SECONDS
                ),
                name="strategy_interval_seconds_in_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    llm_timeout_seconds__gte=1, llm_timeout_seconds__lte=MAX_LLM_TIMEOUT_SECONDS
                ),
                name="strategy_llm_timeout_seconds_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} · {self.get_agent_display()} every {self.interval_seconds}s"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.parameters, dict):
            errors["parameters"] = "Parameters must be a JSON object."
        elif len(self.parameters) > MAX_PARAMETERS:
            errors["parameters"] = f"At most {MAX_PARAMETERS} parameters."
        else:
            for key, value in self.parameters.items():
                problem = _parameter_problem(value)
                if len(key) > MAX_PARAMETER_TEXT:
                    errors["parameters"] = (
                        f"Parameter names are at most {MAX_PARAMETER_TEXT} chars."
                    )
                elif problem:
                    errors["parameters"] = f"Parameter {key!r} {problem}."
            fast, slow = self.parameters.get("ema_fast"), self.parameters.get("ema_slow")
            if isinstance(fast, int) and isinstance(slow, int) and fast >= slow:
                errors["parameters"] = "ema_fast must be shorter than ema_slow."
        if self.agent == self.Agent.LLM and not self.llm_model:
            errors["llm_model"] = "An LLM strategy needs a model name."
        if self.candle_interval not in {"1m", "3m", "5m", "15m", "30m", "1h", "4h"}:
            errors["candle_interval"] = "Use one of 1m, 3m, 5m, 15m, 30m, 1h, 4h."
        if errors:
            raise ValidationError(errors)


def _parameter_problem(value: object) -> str | None:
    """Why a strategy parameter value is unusable, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return "must be a number or text"
    if isinstance(value, str):
        return (
            f"is longer than {MAX_PARAMETER_TEXT} characters"
            if len(value) > MAX_PARAMETER_TEXT
            else None
        )
    # NaN and 1e999 (infinity) parse as JSON floats; neither is a usable setting.
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if abs(value) > MAX_PARAMETER_NUMBER:
        return f"must be between -{MAX_PARAMETER_NUMBER} and {MAX_PARAMETER_NUMBER}"
    return None


class Position(models.Model):
    """A position of this bot in one symbol. At most one open position per symbol."""

    class Side(models.TextChoices):
        LONG = "LONG"
        SHORT = "SHORT"

    class Status(models.TextChoices):
        OPENING = "OPENING", "Opening (entry intent stored)"
        OPEN = "OPEN"
        CLOSING = "CLOSING", "Closing (close sent, not yet confirmed flat)"
        CLOSED = "CLOSED"
        FAILED = "FAILED", "Failed (entry never filled)"

    class CloseReason(models.TextChoices):
        TAKE_PROFIT = "TP"
        STOP_LOSS = "SL"
        MANUAL = "MANUAL"
        EMERGENCY = "EMERGENCY"
        RISK = "RISK"
        LIQUIDATION = "LIQUIDATION"
        SIGNAL = "SIGNAL"

    OPEN_STATUSES = (Status.OPENING, Status.OPEN, Status.CLOSING)

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="positions")
    side = models.CharField(max_length=5, choices=Side.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPENING)
    quantity = models.DecimalField(**QUANTITY, default=Decimal("0"))
    entry_price = models.DecimalField(**PRICE, null=True, blank=True)
    leverage = models.PositiveSmallIntegerField()
    margin_type = models.CharField(max_length=8)
    take_profit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_loss_price = models.DecimalField(**PRICE, null=True, blank=True)
    opened_reason = models.CharField(max_length=255, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(
        max_length=12, choices=CloseReason.choices, blank=True, default=""
    )
    exit_price = models.DecimalField(**PRICE, null=True, blank=True)
    realized_pnl = models.DecimalField(**MONEY, null=True, blank=True)
    fees = models.DecimalField(**MONEY, default=Decimal("0"))
    adopted = models.BooleanField(
        default=False, help_text="Found on the exchange without a record here and adopted."
    )
    skip_reason = models.CharField(
        max_length=255,
        blank=True,
        help_text="Why the last partial close was skipped (e.g. below minQty). Recorded once, "
        "not retried on every pass.",
    )
    skip_reason_at = models.DateTimeField(null=True, blank=True)
    awaiting_fills = models.BooleanField(
        default=False,
        help_text="Closed on the exchange, but its fills could not be read yet: PnL, fees and "
        "exit price are unknown until the guard or reconcile completes them. New entries are "
        "blocked meanwhile when a daily loss limit is set.",
    )

    class Meta:
        ordering = ["-opened_at"]
        # Checked by the dashboard's red buttons and the admin action; granted to "operators".
        permissions = [("emergency_close", "Can emergency-close every position")]
        constraints = [
            models.UniqueConstraint(
                fields=["symbol"],
                condition=Q(status__in=["OPENING", "OPEN", "CLOSING"]),
                name="one_open_position_per_symbol",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="position_quantity_gte_0"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.side} {quantity_text(self.quantity, self.symbol)} {self.symbol} ({self.status})"
        )

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Order(models.Model):
    """An order of this bot, stored as an intent before it is sent to the exchange."""

    class Purpose(models.TextChoices):
        ENTRY = "ENTRY"
        STOP_LOSS = "SL", "Stop-loss"
        TAKE_PROFIT = "TP", "Take-profit"
        CLOSE = "CLOSE"
        LIQUIDATION = "LIQ", "Liquidation (placed by the exchange)"

    class Status(models.TextChoices):
        INTENT = "INTENT", "Intent (stored, not yet sent)"
        SENT = "SENT", "Sent (no answer yet)"
        OPEN = "OPEN", "Open on the exchange"
        FILLED = "FILLED"
        TRIGGERED = "TRIGGERED", "Triggered (conditional order fired)"
        CANCELED = "CANCELED"
        EXPIRED = "EXPIRED"
        REJECTED = "REJECTED"
        UNKNOWN = "UNKNOWN", "Unknown (answer lost; look up by client id)"

    ACTIVE_STATUSES = (Status.INTENT, Status.SENT, Status.OPEN, Status.UNKNOWN)

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="orders")
    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    side = models.CharField(max_length=4, choices=[("BUY", "BUY"), ("SELL", "SELL")])
    order_type = models.CharField(max_length=24)
    quantity = models.DecimalField(**QUANTITY, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    close_position = models.BooleanField(default=False)
    is_conditional = models.BooleanField(default=False, help_text="Sent as a Binance algo order.")
    client_order_id = models.CharField(max_length=36, unique=True)
    exchange_order_id = models.CharField(max_length=40, blank=True)
    triggered_order_id = models.CharField(
        max_length=40,
        blank=True,
        help_text="For a fired stop-loss or take-profit: the exchange id of the market order it "
        "became (actualOrderId); its fills carry this id.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.INTENT)
    filled_quantity = models.DecimalField(**QUANTITY, default=Decimal("0"))
    average_price = models.DecimalField(**PRICE, null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["symbol", "status"])]

    def __str__(self) -> str:
        return f"{self.purpose} {self.side} {self.symbol} {self.client_order_id} ({self.status})"


class StatusChange(models.Model):
    """One status change of a position or an order: from, to, why and who.

    Written only by ``trading.transitions``, in the transaction that moves the row. A row
    created in a status other than its model's default has one with an empty ``from_status``.
    """

    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.PROTECT, related_name="status_changes"
    )
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="status_changes"
    )
    from_status = models.CharField(max_length=10, blank=True, help_text="Empty: created so.")
    to_status = models.CharField(max_length=10)
    reason = models.CharField(max_length=255, blank=True)
    actor = models.CharField(max_length=150, default="bot")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(position__isnull=False, order__isnull=True)
                | Q(position__isnull=True, order__isnull=False),
                name="status_change_of_one_row",
            ),
        ]

    def __str__(self) -> str:
        subject = f"position {self.position_id}" if self.position_id else f"order {self.order_id}"
        return f"{subject}: {self.from_status or '(created)'} -> {self.to_status} ({self.actor})"


class ExchangeRequest(models.Model):
    """One request to the exchange: what, for which symbol and order, how long, what came back."""

    action = models.CharField(max_length=64)
    symbol = models.CharField(max_length=32, blank=True)
    client_order_id = models.CharField(max_length=36, blank=True)
    latency_ms = models.PositiveIntegerField()
    ok = models.BooleanField()
    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=255, blank=True)
    retry_until = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="The exchange said to wait until then (429/418 Retry-After): no worker sends "
        "a request before it. Cleared by the next answered request.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        outcome = "ok" if self.ok else f"error {self.error_code}"
        return f"{self.action} {self.symbol} {outcome} {self.latency_ms}ms"


class TradeEvent(models.Model):
    """One thing the order path did or refused to do, with its reason and actor."""

    class Kind(models.TextChoices):
        OPENED = "OPENED"
        REFUSED = "REFUSED", "Entry refused"
        FAILED = "FAILED", "Entry failed"
        CLOSED = "CLOSED"
        PARTIAL = "PARTIAL", "Partially closed"
        SKIPPED = "SKIPPED", "Close skipped"
        CLOSE_REFUSED = "CLOSE_REFUSED", "Close refused"
        REJECTED = "REJECTED", "Rejected by the exchange"
        PROTECTION = "PROTECTION", "TP/SL placed or replaced"
        ALERT = "ALERT"

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="events")
    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.CharField(max_length=500)
    actor = models.CharField(max_length=150, default="bot")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol}: {self.message}"


class SymbolLock(models.Model):
    """A lease on a symbol held by one worker, claimed with a conditional update."""

    symbol = models.OneToOneField(Symbol, on_delete=models.CASCADE, related_name="lock")
    owner = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lock {self.symbol} ({self.owner or 'free'})"


class Fill(models.Model):
    """One trade of this account on the exchange, recorded once (its trade id is unique per
    symbol), on the order it executed and the position it belongs to.

    Written only through ``trading.fills.fill_record``; a position's PnL, fees, exit price and
    close time are sums of its own fills.
    """

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="fills")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.PROTECT, related_name="fills"
    )
    trade_id = models.BigIntegerField(help_text="The exchange's trade id (unique per symbol).")
    exchange_order_id = models.CharField(
        max_length=40, help_text="The exchange order id the trade carries."
    )
    side = models.CharField(max_length=4, choices=[("BUY", "BUY"), ("SELL", "SELL")])
    quantity = models.DecimalField(**QUANTITY)
    price = models.DecimalField(**PRICE)
    realized_pnl = models.DecimalField(
        **MONEY, help_text="The exchange's realized PnL of this trade, before fees (USDT)."
    )
    commission = models.DecimalField(**MONEY, help_text="Fee, in the commission asset.")
    commission_asset = models.CharField(max_length=16, default="USDT")
    commission_usdt_rate = models.DecimalField(
        **PRICE,
        default=Decimal(1),
        help_text="USDT per unit of the commission asset used to convert the fee (1 for USDT).",
    )
    commission_usdt = models.DecimalField(**MONEY, help_text="The fee converted to USDT.")
    maker = models.BooleanField(default=False)
    time = models.DateTimeField(help_text="When the exchange executed the trade.")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["time", "trade_id"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "trade_id"], name="fill_trade_once"),
        ]
        indexes = [models.Index(fields=["time"])]

    def __str__(self) -> str:
        return f"{self.side} {_plain(self.quantity)} {self.symbol} @ {_plain(self.price)}"


class Income(models.Model):
    """A wallet movement that is not a trade: funding paid or received, a liquidation's
    clearance fee (INSURANCE_CLEAR). Recorded once (its type and tranId), on the position that
    was open in its symbol at the time."""

    class Type(models.TextChoices):
        FUNDING_FEE = "FUNDING_FEE"
        INSURANCE_CLEAR = "INSURANCE_CLEAR"

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="incomes")
    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.PROTECT, related_name="incomes"
    )
    income_type = models.CharField(max_length=24, choices=Type.choices)
    tran_id = models.CharField(max_length=40, help_text="The exchange's tranId.")
    amount = models.DecimalField(**MONEY, help_text="Signed: paid is negative.")
    asset = models.CharField(max_length=16, default="USDT")
    time = models.DateTimeField(help_text="When the exchange booked it.")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["time", "id"]
        constraints = [
            models.UniqueConstraint(fields=["income_type", "tran_id"], name="income_once"),
        ]

    def __str__(self) -> str:
        return f"{self.income_type} {self.symbol} {_plain(self.amount)} {self.asset}"


# The guard's and the stream's own records. Their tables keep the names they had when they
# lived in the monitoring app (``monitoring_*``).
class ProtectionState(models.Model):
    """The guard's memory of one concern of one symbol: a missing stop-loss, take-profit, or a
    position on the exchange with no record here.

    It makes the guard debounce its attempts, give up on rejections that retrying cannot fix
    until the rules change, and log a gap once instead of on every pass.
    """

    class Kind(models.TextChoices):
        STOP_LOSS = "SL", "Stop-loss"
        TAKE_PROFIT = "TP", "Take-profit"
        UNKNOWN_POSITION = "UNKNOWN", "Unknown position"

    symbol = models.ForeignKey(
        "trading.Symbol", on_delete=models.CASCADE, related_name="protection_states"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    position = models.ForeignKey(
        "trading.Position",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The position this state is about; a new position starts afresh.",
    )
    gap_since = models.DateTimeField(
        null=True, blank=True, help_text="When the guard found it missing; empty when in place."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="No attempt before this time (debounce)."
    )
    attempts = models.PositiveIntegerField(default=0)
    gave_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set after a rejection retrying cannot fix: no attempt until the rules "
        "change or an operator clears it.",
    )
    reason = models.CharField(max_length=255, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    rules_version = models.CharField(
        max_length=40,
        blank=True,
        help_text="Fingerprint of the symbol's filters and exit rules when the guard gave up.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_protectionstate"
        constraints = [
            models.UniqueConstraint(fields=["symbol", "kind"], name="one_state_per_symbol_kind")
        ]
        ordering = ["symbol__name", "kind"]

    def __str__(self) -> str:
        state = "gave up" if self.gave_up_at else ("gap" if self.gap_since else "ok")
        return f"{self.symbol} {self.kind}: {state}"


class StreamState(models.Model):
    """The user data stream process as it last reported itself: connected or not since when,
    its last event and how late it arrived."""

    name = models.CharField(max_length=32, unique=True, default="user-data")
    connected = models.BooleanField(default=False)
    since = models.DateTimeField(help_text="When it last connected or disconnected.")
    updated_at = models.DateTimeField(help_text="The process's latest report (every few s).")
    last_event_at = models.DateTimeField(null=True, blank=True)
    lag_ms = models.IntegerField(
        null=True, blank=True, help_text="Latest event: received minus the exchange's event time."
    )
    events = models.PositiveIntegerField(default=0, help_text="Events applied since it started.")
    reconciles = models.PositiveIntegerField(
        default=0, help_text="REST reconciles of a gap (reconnect, expired key, restart)."
    )
    last_reconcile_at = models.DateTimeField(
        null=True, blank=True, help_text="When its latest REST reconcile finished."
    )
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        db_table = "monitoring_streamstate"

    def __str__(self) -> str:
        state = "connected" if self.connected else "down"
        return f"stream {state} since {self.since:%H:%M:%S}"


class ExchangeView(models.Model):
    """What the exchange held at the guard's last pass: the one row pages read instead of the
    exchange (a page view must never spend the bot's request budget)."""

    taken_at = models.DateTimeField(help_text="When the guard read the exchange.")
    positions = models.JSONField(
        default=list,
        help_text="Non-zero positions: symbol, side, quantity, entry, mark, unrealized PnL, "
        "leverage (decimals as strings).",
    )
    orders = models.JSONField(
        default=list,
        help_text="Open orders, regular and conditional: symbol, type, side, stop price.",
    )

    class Meta:
        db_table = "monitoring_exchangeview"
        verbose_name = "exchange view (guard's last read)"

    def __str__(self) -> str:
        return f"exchange at {self.taken_at:%H:%M:%S}: {len(self.positions)} position(s)"


class AccountBalanceHeld(models.Model):
    """The account's balance as last read from the exchange, held so an entry can size without
    reading it again (one row, id 1). ``trading.entry_state`` says when it may be used."""

    wallet = models.DecimalField(**MONEY, help_text="totalWalletBalance (USDT).")
    equity = models.DecimalField(**MONEY, help_text="totalMarginBalance (USDT).")
    available = models.DecimalField(**MONEY, help_text="availableBalance (USDT).")
    taken_at = models.DateTimeField(help_text="When the request that read it was sent.")

    class Meta:
        verbose_name = "account balance (held)"

    def __str__(self) -> str:
        return f"wallet {_plain(self.wallet)} USDT at {self.taken_at:%H:%M:%S}"
