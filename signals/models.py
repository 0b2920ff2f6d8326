"""Signal data: every decision an agent made, every LLM call, and signals entered by hand.

Decisions and LLM calls are audit records written by the bot and never edited.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

CONFIDENCE = {"max_digits": 5, "decimal_places": 4}
PRICE = {"max_digits": 24, "decimal_places": 10}


class Action(models.TextChoices):
    LONG = "LONG", "Long (open a long)"
    SHORT = "SHORT", "Short (open a short)"
    FLAT = "FLAT", "Flat (close the open position)"
    HOLD = "HOLD", "Hold (do nothing)"


class LlmCall(models.Model):
    """One request to the LLM: what was asked, what came back, and whether it was used."""

    class Outcome(models.TextChoices):
        ACCEPTED = "ACCEPTED", "Accepted (every asked symbol answered validly)"
        PARTIAL = "PARTIAL", "Partial (some symbols refused)"
        REFUSED = "REFUSED", "Refused (answer invalid; nothing traded)"
        FAILED = "FAILED", "Failed (HTTP error, timeout or no answer)"

    model = models.CharField(max_length=100)
    symbols = models.CharField(max_length=255, help_text="The symbols asked, comma-separated.")
    request = models.JSONField(help_text="The request body sent (the API key is never stored).")
    response = models.TextField(blank=True, help_text="The raw response body, as received.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    refusal_reason = models.TextField(
        blank=True, help_text="Why the answer (or part of it) was not used."
    )
    results = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per symbol: the validated signal, or the reason it was refused.",
    )
    latency_ms = models.PositiveIntegerField()
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "LLM call"

    def __str__(self) -> str:
        return f"{self.model} {self.symbols} {self.outcome} {self.latency_ms}ms"


class ManualSignal(models.Model):
    """A signal entered by an operator, used once by the symbol's next trade cycle."""

    symbol = models.ForeignKey(
        "trading.Symbol", on_delete=models.PROTECT, related_name="manual_signals"
    )
    action = models.CharField(
        max_length=5,
        choices=[(a.value, a.label) for a in (Action.LONG, Action.SHORT, Action.FLAT)],
        help_text="What the next cycle of this symbol does. Size, leverage and exits still "
        "come from the risk rules.",
    )
    note = models.CharField(max_length=255, blank=True, help_text="Why: kept with the decision.")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    consumed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a cycle took it; empty = still pending."
    )
    superseded = models.BooleanField(
        default=False,
        help_text="A newer signal for the same symbol was taken instead; this one was dropped.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["symbol", "created_at"],
                condition=Q(consumed_at__isnull=True),
                name="manual_signal_pending",
            )
        ]

    def __str__(self) -> str:
        state = "pending" if self.consumed_at is None else "used"
        if self.superseded:
            state = "superseded"
        return f"{self.action} {self.symbol} ({state})"


class SignalDecision(models.Model):
    """What an agent decided for one symbol in one cycle, and why."""

    symbol = models.ForeignKey(
        "trading.Symbol", on_delete=models.PROTECT, related_name="signal_decisions"
    )
    agent = models.CharField(max_length=16, help_text="The Strategy agent that decided.")
    action = models.CharField(max_length=5, choices=Action.choices)
    reason = models.TextField()
    confidence = models.DecimalField(**CONFIDENCE, null=True, blank=True)
    profit_target = models.DecimalField(
        **PRICE, null=True, blank=True, help_text="Advisory: the order path uses the risk rules."
    )
    stop_loss = models.DecimalField(
        **PRICE, null=True, blank=True, help_text="Advisory: the order path uses the risk rules."
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="Inputs behind the decision (indicator values...)."
    )
    llm_call = models.ForeignKey(
        LlmCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    manual_signal = models.OneToOneField(
        ManualSignal, null=True, blank=True, on_delete=models.SET_NULL, related_name="decision"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["symbol", "created_at"])]

    def __str__(self) -> str:
        return f"{self.symbol} {self.action} by {self.agent}"
