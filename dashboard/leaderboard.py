"""The agents' scoreboard: each signal agent's closed trades over a period, from the books.

A position belongs to the agent whose stored decision opened it: the latest decision of that
symbol, on the position's side, made before the entry. Positions no agent decided (an operator's
``run_cycle --signal``, an adopted position) count for "operator". Every figure comes from the
positions' realized PnL and fees, the same numbers as the books.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from signals.models import SignalDecision
from trading.models import Position

OPERATOR = "operator"


@dataclass(frozen=True)
class AgentScore:
    agent: str  # rule, llm, manual or operator
    symbol: str
    trades: int
    wins: int
    realized_pnl: Decimal  # net of fees
    fees: Decimal
    gross_profit: Decimal
    gross_loss: Decimal  # positive
    holding: timedelta  # total time held
    max_drawdown: Decimal  # positive: the deepest fall of cumulative PnL from its peak

    @property
    def win_rate(self) -> Decimal | None:
        return Decimal(self.wins) / Decimal(self.trades) if self.trades else None

    @property
    def profit_factor(self) -> Decimal | None:
        """Gross profit over gross loss; None when nothing was lost (undefined, not infinite)."""
        if not self.gross_loss:
            return None
        return (self.gross_profit / self.gross_loss).quantize(Decimal("0.01"))

    @property
    def average_holding_seconds(self) -> float | None:
        return self.holding.total_seconds() / self.trades if self.trades else None


def agent_leaderboard(*, since: datetime | None, until: datetime | None = None) -> list[AgentScore]:
    """Scores per (agent, symbol) of positions closed in [since, until), best PnL first."""
    closed = Position.objects.filter(
        status=Position.Status.CLOSED, realized_pnl__isnull=False, closed_at__isnull=False
    ).select_related("symbol")
    if since is not None:
        closed = closed.filter(closed_at__gte=since)
    if until is not None:
        closed = closed.filter(closed_at__lt=until)
    positions = list(closed.order_by("closed_at", "id"))
    if not positions:
        return []
    opener = _openers(positions)
    by_key: dict[tuple[str, str], list[Position]] = defaultdict(list)
    for position in positions:
        by_key[(opener[position.pk], position.symbol.name)].append(position)
    scores = [_score(agent, symbol, rows) for (agent, symbol), rows in by_key.items()]
    return sorted(scores, key=lambda s: (-s.realized_pnl, s.agent, s.symbol))


def _score(agent: str, symbol: str, positions: list[Position]) -> AgentScore:
    pnls = [p.realized_pnl for p in positions]
    cumulative = peak = drawdown = Decimal(0)
    for pnl in pnls:  # positions come ordered by close time
        cumulative += pnl
        peak = max(peak, cumulative)
        drawdown = max(drawdown, peak - cumulative)
    return AgentScore(
        agent=agent,
        symbol=symbol,
        trades=len(positions),
        wins=sum(1 for pnl in pnls if pnl > 0),
        realized_pnl=sum(pnls, Decimal(0)),
        fees=sum((p.fees for p in positions), Decimal(0)),
        gross_profit=sum((pnl for pnl in pnls if pnl > 0), Decimal(0)),
        gross_loss=-sum((pnl for pnl in pnls if pnl < 0), Decimal(0)),
        holding=sum((p.closed_at - p.opened_at for p in positions), timedelta(0)),
        max_drawdown=drawdown,
    )


def _openers(positions: list[Position]) -> dict[int, str]:
    """The agent that opened each position (one query for all decisions involved)."""
    first_open = min(p.opened_at for p in positions)
    decisions = (
        SignalDecision.objects.filter(
            symbol_id__in={p.symbol_id for p in positions},
            action__in=[Position.Side.LONG, Position.Side.SHORT],
            created_at__lte=max(p.opened_at for p in positions),
            created_at__gte=first_open - timedelta(hours=1),
        )
        .exclude(agent="")
        .order_by("created_at", "id")
        .values_list("symbol_id", "action", "created_at", "agent")
    )
    timeline: dict[tuple[int, str], tuple[list[datetime], list[str]]] = defaultdict(
        lambda: ([], [])
    )
    for symbol_id, action, created_at, agent in decisions:
        times, agents = timeline[(symbol_id, action)]
        times.append(created_at)
        agents.append(agent)
    result = {}
    for position in positions:
        times, agents = timeline.get((position.symbol_id, position.side), ([], []))
        index = bisect_right(times, position.opened_at) - 1
        # A decision leads to its entry within the same cycle: seconds, not an hour.
        recent = index >= 0 and position.opened_at - times[index] <= timedelta(minutes=10)
        result[position.pk] = agents[index] if recent else OPERATOR
    return result
