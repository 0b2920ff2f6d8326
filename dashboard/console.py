"""The Telegram console: the dashboard's figures and the operator's commands, in a chat.

Only allow-listed chats are answered; a message from any other chat gets no answer at all (an
answer would tell a stranger the bot exists) and is logged. Every command goes through the
same services as the admin, with the actor ``telegram:<chat id>/<sender>``, so the kill
switch's history, the positions' events and the emergency report say who did it.

``/closeall`` asks first: it answers with a one-time code, and only ``/closeall <code>`` from
the same chat, within ``CONFIRM_SECONDS``, runs the emergency close.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from core.formatting import duration_text, money_text, price_text, quantity_text
from dashboard import selectors
from dashboard.leaderboard import agent_leaderboard
from dashboard.models import EquitySnapshot
from monitoring.telegram import TelegramConfig, TelegramError, telegram_config, telegram_send
from monitoring.telegram_updates import IncomingMessage, telegram_get_updates
from trading.emergency import UnknownSymbols, emergency_close_all
from trading.models import Position, Symbol
from trading.selectors import position_open_for_symbol
from trading.services import position_close
from trading.switch import SwitchReasonRequired, trading_switch_set

logger = logging.getLogger(__name__)

CONFIRM_SECONDS = 120
POLL_SECONDS = 25
PNL_PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7)}
HELP = (
    "/status · /positions · /pnl [day|week] · /pause <reason> · /resume · "
    "/close <SYMBOL> · /closeall"
)


@dataclass
class _Pending:
    code: str
    expires_at: datetime


def console_chat_ids() -> set[str]:
    """The chats the console obeys: TELEGRAM_CONSOLE_CHAT_IDS, else TELEGRAM_CHAT_ID."""
    ids = [str(i).strip() for i in settings.TELEGRAM_CONSOLE_CHAT_IDS if str(i).strip()]
    if not ids and settings.TELEGRAM_CHAT_ID:
        ids = [str(settings.TELEGRAM_CHAT_ID).strip()]
    return set(ids)


class Console:
    """Turns one chat message into one reply (``None``: say nothing)."""

    def __init__(
        self,
        *,
        allowed_chat_ids: set[str],
        code_factory: Callable[[], str] = lambda: f"{secrets.randbelow(10**6):06d}",
    ) -> None:
        self.allowed_chat_ids = allowed_chat_ids
        self.code_factory = code_factory
        self.pending: dict[str, _Pending] = {}

    def handle(self, message: IncomingMessage) -> str | None:
        if not message.text:
            return None
        if message.chat_id not in self.allowed_chat_ids:
            logger.warning(
                "[Console] message from chat %s (%s) not allowed: ignored",
                message.chat_id,
                message.sender or "?",
            )
            return None
        command, _, argument = message.text.strip().partition(" ")
        # "/status@arena_bot" in groups: the bot's name is not part of the command.
        command = command.split("@", 1)[0].lower()
        argument = argument.strip()
        actor = f"telegram:{message.chat_id}/{message.sender or '?'}"[:150]
        logger.info("[Console] %s by %s", message.text.strip()[:200], actor)
        handler = {
            "/status": self._status,
            "/positions": self._positions,
            "/pnl": self._pnl,
            "/pause": self._pause,
            "/resume": self._resume,
            "/close": self._close,
            "/closeall": self._closeall,
        }.get(command)
        if handler is None:
            return f"Unknown command. {HELP}"
        return handler(argument=argument, actor=actor, chat_id=message.chat_id)

    # --- reads ---------------------------------------------------------------------------------
    def _status(self, *, argument: str, actor: str, chat_id: str) -> str:
        switch = selectors.trading_switch_current()
        lines = [
            "Trading ENABLED"
            if switch.enabled
            else f"Trading HALTED by {switch.changed_by or '?'}: {switch.reason}"
        ]
        equity = EquitySnapshot.objects.order_by("-time", "-id").first()
        if equity is not None:
            age = duration_text((timezone.now() - equity.time).total_seconds())
            lines.append(f"Equity {money_text(equity.equity, grouped=True)} USDT ({age} ago)")
        lines.extend(self._position_lines())
        for beat in selectors.heartbeats_latest() or []:
            state = "STALE" if beat.stale else "ok" if beat.ok else f"failed: {beat.error}"
            age = "never" if beat.age_seconds is None else f"{duration_text(beat.age_seconds)} ago"
            lines.append(f"{beat.process}: {age}, {state}")
        return "\n".join(lines)

    def _positions(self, *, argument: str, actor: str, chat_id: str) -> str:
        return "\n".join(self._position_lines())

    def _position_lines(self) -> list[str]:
        positions = selectors.open_positions_with_marks()
        if not positions.rows:
            return ["No open position."]
        lines = []
        for row in positions.rows:
            pnl = (
                "uPnL ?"
                if row.unrealized_pnl is None
                else f"uPnL {money_text(row.unrealized_pnl, signed=True)}"
            )
            protection = ("SL" if row.stop_on_exchange else "NO SL") + (
                " TP" if row.take_profit_on_exchange else " no TP"
            )
            lines.append(
                f"{row.symbol} {row.side} {quantity_text(row.quantity, row.filters)} @ "
                f"{price_text(row.entry_price, row.filters)} | {pnl} USDT | {protection}"
                + (f" | {row.note}" if row.note else "")
            )
        if positions.age_seconds is not None:
            lines.append(f"(exchange read {duration_text(positions.age_seconds)} ago)")
        return lines

    def _pnl(self, *, argument: str, actor: str, chat_id: str) -> str:
        period = argument.lower() or "day"
        if period not in PNL_PERIODS:
            return "Usage: /pnl [day|week]"
        since = timezone.now() - PNL_PERIODS[period]
        closed = Position.objects.filter(
            status=Position.Status.CLOSED, closed_at__gte=since, realized_pnl__isnull=False
        ).aggregate(
            pnl=Sum("realized_pnl"),
            fees=Sum("fees"),
            trades=Count("id"),
            wins=Count("id", filter=Q(realized_pnl__gt=0)),
        )
        pnl = closed["pnl"] or Decimal(0)
        lines = [
            f"Realized PnL ({period}): {money_text(pnl, signed=True)} USDT, "
            f"fees {money_text(closed['fees'] or Decimal(0))}, "
            f"{closed['trades']} trade(s), {closed['wins']} won"
        ]
        for score in agent_leaderboard(since=since):
            lines.append(
                f"{score.agent} {score.symbol}: {money_text(score.realized_pnl, signed=True)} "
                f"({score.trades} trade(s), {score.wins} won)"
            )
        return "\n".join(lines)

    # --- actions -------------------------------------------------------------------------------
    def _pause(self, *, argument: str, actor: str, chat_id: str) -> str:
        try:
            switch = trading_switch_set(enabled=False, reason=argument, actor=actor)
        except SwitchReasonRequired as exc:
            return f"{exc} Usage: /pause <reason>"
        return f"Trading HALTED: {switch.reason}"

    def _resume(self, *, argument: str, actor: str, chat_id: str) -> str:
        trading_switch_set(enabled=True, reason=argument or "resumed from Telegram", actor=actor)
        return "Trading ENABLED"

    def _close(self, *, argument: str, actor: str, chat_id: str) -> str:
        name = argument.upper()
        if not name:
            return "Usage: /close <SYMBOL>"
        symbol = Symbol.objects.filter(name=name).first()
        if symbol is None:
            return f"Unknown symbol {name}."
        position = position_open_for_symbol(symbol=symbol)
        if position is None:
            return f"No open position in {name}."
        outcome = position_close(position=position, reason=Position.CloseReason.MANUAL, actor=actor)
        pnl = "" if outcome.pnl is None else f" | PnL {money_text(outcome.pnl, signed=True)} USDT"
        return f"{name}: {outcome}{pnl}"

    def _closeall(self, *, argument: str, actor: str, chat_id: str) -> str:
        now = timezone.now()
        pending = self.pending.pop(chat_id, None)
        if not argument:
            code = self.code_factory()
            self.pending[chat_id] = _Pending(code, now + timedelta(seconds=CONFIRM_SECONDS))
            return (
                "This halts trading, cancels every order and closes every position at market. "
                f"To confirm, send within {CONFIRM_SECONDS} s:\n/closeall {code}"
            )
        if pending is None or pending.expires_at < now or argument != pending.code:
            logger.warning("[Console] /closeall with a wrong or expired code by %s", actor)
            return "Wrong or expired code: nothing done. Send /closeall for a new one."
        report = emergency_close_all(
            symbols=None, reason="emergency close from Telegram", actor=actor
        )
        lines = ["Trading halted." if report.halted else "Trading was already halted."]
        lines.extend(str(result) for result in report.results)
        lines.append(
            f"Flat: nothing is open. {report.orders_cancelled} order(s) cancelled."
            if report.ok
            else f"LEFT OPEN: {', '.join(r.symbol for r in report.left_open)}"
        )
        return "\n".join(lines)


def console_run(
    *,
    console: Console,
    config: TelegramConfig | None = None,
    stop: threading.Event,
    poll_seconds: int = POLL_SECONDS,
    rounds: int | None = None,
) -> int:
    """Answer messages until ``stop`` is set (or after ``rounds`` polls); the messages handled.

    A message whose handling fails gets an apology and the loop goes on; Telegram being
    unreachable backs off, up to a minute, and tries again.
    """
    config = config or telegram_config()
    offset: int | None = None
    handled = 0
    backoff = 1.0
    while not stop.is_set() and (rounds is None or rounds > 0):
        if rounds is not None:
            rounds -= 1
        try:
            messages = telegram_get_updates(config=config, offset=offset, poll_seconds=poll_seconds)
        except TelegramError as exc:
            logger.warning("[Console] %s", exc)
            stop.wait(exc.retry_after or backoff)
            backoff = min(backoff * 2, 60.0)
            continue
        backoff = 1.0
        for message in messages:
            offset = message.update_id + 1
            handled += _answer(console=console, config=config, message=message)
    return handled


def _answer(*, console: Console, config: TelegramConfig, message: IncomingMessage) -> int:
    try:
        reply = console.handle(message)
    except UnknownSymbols as exc:
        reply = str(exc)
    except Exception:
        logger.exception("[Console] %r failed", message.text[:100])
        reply = "That failed; nothing more was done. The error is in the bot's log."
    if reply is None:
        return 0
    try:
        telegram_send(config=replace(config, chat_id=message.chat_id), text=reply)
    except TelegramError as exc:
        logger.warning("[Console] reply to %s not delivered: %s", message.chat_id, exc)
    return 1
