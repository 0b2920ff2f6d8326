"""Signals: ask the symbol's agent for a decision and store it, with its inputs, for audit.

``signal_for_symbol`` is what a trade cycle calls (``signals.cycles.trade_cycle_run``, under the
symbol lock). It never raises for a bad answer or missing data: the cycle gets HOLD with the
reason, and the reason is stored. Exchange errors other than temporary ones propagate so the
order path applies its own policy (e.g. halting on bad credentials).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.errors import TemporaryError
from exchange.gateway import ExchangeGateway
from signals.agents import (
    AgentDecision,
    InvalidParameters,
    candle_seconds,
    candles_stale_reason,
    closed_candles,
    hold,
    rule_decide,
    rule_lookback,
    rule_parameters_parse,
)
from signals.llm import (
    CANDLES_FOR_PROMPT,
    AccountSnapshot,
    AnswerRefused,
    MarketSnapshot,
    PositionSnapshot,
    answer_parse,
    completion_content,
    llm_messages,
    llm_post,
    llm_request_body,
)
from signals.models import LlmCall, ManualSignal, SignalDecision
from signals.types import Decision
from trading.models import Position, Strategy, Symbol

logger = logging.getLogger(__name__)

# The cycle task's soft time limit is 100 s; an LLM call may use at most this much of it, whatever
# a strategy asks for, so the exchange requests around it still fit.
LLM_TIMEOUT_CAP_SECONDS = 60
CONFIDENCE_PLACES = Decimal("0.0001")


def signal_for_symbol(*, symbol: Symbol, gateway: ExchangeGateway) -> Decision:
    """Ask the symbol's agent what to do now; store the decision and return it with its id."""
    now = timezone.now()
    if not symbol.enabled:
        # A cycle queued before the symbol was disabled may still arrive.
        return _decision_store(symbol=symbol, agent="", decision=hold("symbol is disabled"))
    strategy = Strategy.objects.filter(symbol=symbol).first()
    if strategy is None:
        return _decision_store(symbol=symbol, agent="", decision=hold("symbol has no strategy"))
    if strategy.agent == Strategy.Agent.MANUAL:
        return manual_decision(symbol=symbol)
    try:
        if strategy.agent == Strategy.Agent.LLM:
            decision, llm_call = _llm_decide(strategy=strategy, gateway=gateway, now=now)
        else:
            decision, llm_call = _rule_decide(strategy=strategy, gateway=gateway, now=now), None
    except TemporaryError as e:
        decision, llm_call = hold(f"exchange unavailable: {e}"), None
    return _decision_store(
        symbol=symbol, agent=strategy.agent, decision=decision, llm_call=llm_call
    )


def _decision_store(
    *,
    symbol: Symbol,
    agent: str,
    decision: AgentDecision,
    llm_call: LlmCall | None = None,
    manual_signal: ManualSignal | None = None,
) -> Decision:
    confidence = decision.confidence
    if confidence is not None:
        confidence = confidence.quantize(CONFIDENCE_PLACES)
    row = SignalDecision.objects.create(
        symbol=symbol,
        agent=agent,
        action=decision.action,
        reason=decision.reason,
        confidence=confidence,
        profit_target=decision.profit_target,
        stop_loss=decision.stop_loss,
        details=decision.details,
        llm_call=llm_call,
        manual_signal=manual_signal,
    )
    logger.info("signal %s %s by %s: %s", symbol.name, row.action, agent, row.reason)
    return Decision(
        action=decision.action, reason=decision.reason, confidence=confidence, decision_id=row.id
    )


# --- Rule-based ------------------------------------------------------------------------------


def _rule_decide(*, strategy: Strategy, gateway: ExchangeGateway, now: datetime) -> AgentDecision:
    try:
        parameters = rule_parameters_parse(strategy.parameters)
        interval = candle_seconds(strategy.candle_interval)
    except InvalidParameters as e:
        return hold(f"invalid strategy parameters: {e}")
    lookback = rule_lookback(
        parameters=parameters,
        cycle_seconds=strategy.interval_seconds,
        interval_seconds=interval,
    )
    # Three times the slowest window lets the EMAs forget their seed, so two cycles that see
    # overlapping candles agree; plus one for the candle still forming.
    limit = min(1500, max(100, 3 * parameters.candles_needed(lookback) + 1))
    candles = gateway.fetch_candles(
        symbol=strategy.symbol.name, interval=strategy.candle_interval, limit=limit
    )
    return rule_decide(
        candles=candles,
        parameters=parameters,
        interval_seconds=interval,
        lookback=lookback,
        now=now,
    )


# --- Manual ----------------------------------------------------------------------------------


def check_manual_signal_accepted(*, symbol: Symbol) -> str | None:
    """Why a manual signal for this symbol would not be used, or ``None``.

    A signal left pending under another agent would fire whenever the strategy is later switched
    to manual, long after the reason for it passed, so it is refused up front.
    """
    strategy = Strategy.objects.filter(symbol=symbol).first()
    if strategy is None:
        return f"{symbol.name} has no strategy."
    if strategy.agent != Strategy.Agent.MANUAL:
        return (
            f"{symbol.name} is traded by the {strategy.get_agent_display()} agent: set its "
            "strategy to Manual first."
        )
    return None


def manual_signal_create(
    *, symbol: Symbol, action: str, note: str = "", created_by: str
) -> ManualSignal:
    """Queue a signal for the symbol's next cycle.

    Raises ``ValidationError`` when the symbol's strategy is not manual or the fields are invalid.
    """
    refusal = check_manual_signal_accepted(symbol=symbol)
    if refusal:
        raise ValidationError({"symbol": refusal})
    signal = ManualSignal(symbol=symbol, action=action, note=note, created_by=created_by)
    signal.full_clean()
    signal.save()
    return signal


def manual_signal_claim(*, symbol: Symbol) -> ManualSignal | None:
    """Take the newest pending signal of the symbol, exactly once; older pending ones lapse.

    The newest wins because an operator who changes their mind enters a new signal; the older
    ones are marked superseded rather than traded one after another.
    """
    while True:
        pending = (
            ManualSignal.objects.filter(symbol=symbol, consumed_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        if pending is None:
            return None
        now = timezone.now()
        # Conditional update: only the cycle whose UPDATE changes the row owns the signal; a
        # concurrent cycle sees 0 rows and looks again (and finds it gone).
        claimed = ManualSignal.objects.filter(id=pending.id, consumed_at__isnull=True).update(
            consumed_at=now
        )
        if claimed == 1:
            ManualSignal.objects.filter(
                symbol=symbol, consumed_at__isnull=True, id__lt=pending.id
            ).update(consumed_at=now, superseded=True)
            pending.consumed_at = now
            return pending


def manual_decision(*, symbol: Symbol) -> Decision:
    """The manual agent: the claimed signal, or HOLD when none is pending."""
    with transaction.atomic():
        # Claim and record together: a cycle that fails to record leaves the signal pending.
        signal = manual_signal_claim(symbol=symbol)
        if signal is None:
            decision = hold("no manual signal pending")
        else:
            by = f" by {signal.created_by}" if signal.created_by else ""
            note = f": {signal.note}" if signal.note else ""
            decision = AgentDecision(
                action=signal.action,  # type: ignore[arg-type]  # choices are Action values
                reason=f"manual signal #{signal.id}{by}{note}",
            )
        return _decision_store(
            symbol=symbol, agent=Strategy.Agent.MANUAL, decision=decision, manual_signal=signal
        )


# --- LLM -------------------------------------------------------------------------------------


def _llm_decide(
    *, strategy: Strategy, gateway: ExchangeGateway, now: datetime
) -> tuple[AgentDecision, LlmCall | None]:
    symbol = strategy.symbol
    try:
        interval = candle_seconds(strategy.candle_interval)
    except InvalidParameters as e:
        return hold(f"invalid strategy parameters: {e}"), None
    if not strategy.llm_model:
        return hold("LLM strategy has no model name"), None
    candles = gateway.fetch_candles(
        symbol=symbol.name, interval=strategy.candle_interval, limit=CANDLES_FOR_PROMPT + 1
    )
    stale = candles_stale_reason(candles=candles, interval_seconds=interval, now=now)
    if stale:
        # Nothing to ask about: do not pay for a call on old data.
        return hold(stale), None
    closed = closed_candles(candles=candles, interval_seconds=interval, now=now)
    market = MarketSnapshot(
        symbol=symbol.name,
        mark_price=gateway.fetch_mark_price(symbol=symbol.name),
        funding_rate=gateway.fetch_funding_rate(symbol=symbol.name),
        closes=[c.close for c in closed],
        candle_interval=strategy.candle_interval,
    )
    account = _account_snapshot(gateway=gateway)
    results, call = llm_decide(
        model=strategy.llm_model,
        timeout_seconds=min(strategy.llm_timeout_seconds, LLM_TIMEOUT_CAP_SECONDS),
        markets=[market],
        account=account,
        now=now,
    )
    return results[symbol.name], call


def _account_snapshot(*, gateway: ExchangeGateway) -> AccountSnapshot:
    balance = gateway.fetch_balance()
    exits = {
        p.symbol.name: p
        for p in Position.objects.filter(status__in=Position.OPEN_STATUSES).select_related("symbol")
    }
    positions = []
    for p in gateway.fetch_positions():
        ours = exits.get(p.symbol)
        positions.append(
            PositionSnapshot(
                symbol=p.symbol,
                side=p.side,
                quantity=p.quantity,
                entry_price=p.entry_price,
                mark_price=p.mark_price,
                unrealized_pnl=p.unrealized_pnl,
                leverage=p.leverage,
                take_profit=ours.take_profit_price if ours else None,
                stop_loss=ours.stop_loss_price if ours else None,
            )
        )
    return AccountSnapshot(equity=balance.equity, available=balance.available, positions=positions)


def llm_decide(
    *,
    model: str,
    timeout_seconds: float,
    markets: Sequence[MarketSnapshot],
    account: AccountSnapshot,
    now: datetime,
) -> tuple[dict[str, AgentDecision], LlmCall]:
    """Ask the LLM about these symbols in one call; record the call; a decision per symbol.

    Every asked symbol gets a decision: the model's when its entry passed the strict check,
    else HOLD with the refusal reason. The call, its prompt, answer, latency and token usage are
    stored whatever happened.
    """
    asked = {m.symbol: m.mark_price for m in markets}
    try:
        messages = llm_messages(markets=markets, account=account, now=now)
    except ValueError as e:
        # Too little history for the indicators: nothing worth sending.
        messages, prompt_error = [], str(e)
    else:
        prompt_error = ""
    body = llm_request_body(model=model, messages=messages)
    tokens: dict[str, int | None] = {}
    results: dict[str, AgentDecision | str] = {}
    if prompt_error:
        response_body, status, latency_ms, failure = "", None, 0, prompt_error
        outcome = LlmCall.Outcome.FAILED
    else:
        response = llm_post(
            url=settings.LLM_API_URL,
            api_key=settings.LLM_API_KEY,
            body=body,
            timeout=timeout_seconds,
        )
        response_body, status, latency_ms = response.body, response.status, response.latency_ms
        failure, outcome = response.error, LlmCall.Outcome.FAILED
        if not failure:
            try:
                content, tokens = completion_content(response.body)
                enabled = set(Symbol.objects.filter(enabled=True).values_list("name", flat=True))
                results = answer_parse(content=content, asked=asked, enabled=enabled)
            except AnswerRefused as e:
                failure, outcome = str(e), LlmCall.Outcome.REFUSED
            else:
                outcome = _outcome(results=results, asked=asked)
                failure = "; ".join(r for r in results.values() if isinstance(r, str))
    call = LlmCall.objects.create(
        model=model,
        symbols=",".join(asked),
        request=body,
        response=response_body,
        http_status=status,
        outcome=outcome,
        refusal_reason=failure,
        results={s: _result_json(r) for s, r in results.items()},
        latency_ms=latency_ms,
        prompt_tokens=tokens.get("prompt_tokens"),
        completion_tokens=tokens.get("completion_tokens"),
        total_tokens=tokens.get("total_tokens"),
    )
    decisions = {}
    for symbol in asked:
        result = results.get(symbol, failure)
        if isinstance(result, AgentDecision):
            decisions[symbol] = replace(result, details={**result.details, "llm_call": call.id})
        else:
            decisions[symbol] = hold(f"LLM answer refused: {result}", llm_call=call.id)
    return decisions, call


def _outcome(*, results: dict[str, AgentDecision | str], asked: dict[str, Decimal]) -> str:
    accepted = [s for s in asked if isinstance(results.get(s), AgentDecision)]
    if not accepted:
        return LlmCall.Outcome.REFUSED
    if len(accepted) == len(results):
        return LlmCall.Outcome.ACCEPTED
    return LlmCall.Outcome.PARTIAL


def _result_json(result: AgentDecision | str) -> dict[str, Any]:
    if isinstance(result, str):
        return {"refused": result}
    return {
        "action": result.action,
        "confidence": None if result.confidence is None else str(result.confidence),
        "profit_target": None if result.profit_target is None else str(result.profit_target),
        "stop_loss": None if result.stop_loss is None else str(result.stop_loss),
        **result.details,
    }
