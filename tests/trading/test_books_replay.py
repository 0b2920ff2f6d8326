"""Books exact over a long replay: every exchange trade on exactly one position, each position's
money equal to the exchange's for its own orders, the wallet change explained to 1e-8.

Four hours of generated 1-minute candles on BTCUSDT and BNBUSDT is stepped through an
in-process paper exchange (market orders filling 0.05 % worse than the price), while the test
trades as the workers would: an entry whenever a symbol is flat, stops and targets firing on the
exchange, signal closes after a while, one liquidation (its exits gone), one emergency close
(one position stuck CLOSING). Then the ledger is checked against the exchange's own records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from paper.candles import generate, write
from paper.runtime import PaperExchange
from paper.testing import PaperControl
from risk.models import RiskProfile
from risk.sizing import allowed_margin
from trading.emergency import emergency_close_all
from trading.gateway import exchange_gateway
from trading.income import incomes_sync
from trading.models import Fill, Income, Order, Position, Symbol
from trading.reconcile import reconcile
from trading.services import position_close, position_open, position_record_exchange_close
from trading.switch import trading_switch_set

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOLS = ("BTCUSDT", "BNBUSDT")
WARMUP = 60
MINUTES = 240
CYCLE_MINUTES = 3
SIGNAL_CLOSE_AFTER = 25  # minutes
LIQUIDATE_AT = 90
EMERGENCY_AT = 160
START_BALANCE = Decimal("10000")
# 2025-01-06 06:00 UTC: after the warm-up hour the replay crosses the 08:00 funding.
START_MS = 1_736_143_200_000


@pytest.fixture
def replay(tmp_path: Path, settings) -> Iterator[PaperExchange]:
    """A paper exchange replaying generated candles of the two symbols, stepped by the test."""
    for symbol in SYMBOLS:
        candles = generate(symbol, start_ms=START_MS, minutes=WARMUP + MINUTES, seed=12)
        write(tmp_path / f"{symbol}-1m-generated.csv.gz", candles)
    # Practically still: the test walks the candles itself with ``feed.step()``.
    exchange = PaperExchange(
        port=0, feed="replay", speed=1e-6, candle_dir=tmp_path, warmup=WARMUP
    ).start()
    exchange.engine.slippage = Decimal("0.0005")
    settings.EXCHANGE = "paper"
    settings.PAPER_EXCHANGE_URL = exchange.url
    # Hours of trading in well under a minute: Binance's per-minute limits are not the subject.
    settings.EXCHANGE_WEIGHT_BUDGET_1M = 10_000_000
    PaperControl(exchange.url).configure(
        weight_limit_1m=10_000_000, orders_10s=1_000_000, orders_1m=1_000_000
    )
    try:
        yield exchange
    finally:
        exchange.stop()


@pytest.fixture
def gateway(replay: PaperExchange) -> ExchangeGateway:
    gateway = exchange_gateway(
        retry_policy=RetryPolicy(max_total_seconds=5, sleep=lambda seconds: None)
    )
    gateway.client.enableRateLimit = False
    return gateway


def test_books_when_long_replay_traded_then_every_trade_on_one_position_and_money_exact(
    replay: PaperExchange, gateway: ExchangeGateway, defaults: None
) -> None:
    control = PaperControl(replay.url)
    control.set_balance("USDT", str(START_BALANCE))
    RiskProfile.objects.update(entry_slippage_pct=Decimal("0.1"), max_open_positions=2)
    Symbol.objects.filter(name__in=SYMBOLS).update(enabled=True)
    symbols = {s.name: s for s in Symbol.objects.filter(name__in=SYMBOLS)}
    caps: dict[int, Decimal] = {}
    opened_at_minute: dict[int, int] = {}
    entries = Counter()
    started = timezone.now()
    liquidated = emergency = False

    for minute in range(MINUTES):
        for _ in range(4):
            replay.feed.step()
        if minute % CYCLE_MINUTES:
            continue
        _record_flat_positions(gateway)
        if minute >= LIQUIDATE_AT and not liquidated:
            liquidated = _liquidate_one(replay, control, gateway)
        if minute >= EMERGENCY_AT and not emergency:
            emergency = _emergency_close_with_one_stuck_closing()
        for name, symbol in symbols.items():
            position = Position.objects.filter(
                symbol=symbol, status__in=Position.OPEN_STATUSES
            ).first()
            if position is None:
                side = "LONG" if entries[name] % 2 == 0 else "SHORT"
                balance = gateway.fetch_balance()
                outcome = position_open(symbol=symbol, side=side, reason="replay", gateway=gateway)
                entries[name] += 1
                if outcome.position is not None and outcome.position.status == "OPEN":
                    profile = RiskProfile.objects.get(is_active=True)
                    caps[outcome.position.pk] = allowed_margin(
                        equity=balance.equity,
                        risk_pct=profile.risk_pct,
                        max_risk_usd=profile.max_risk_usd,
                    )
                    opened_at_minute[outcome.position.pk] = minute
            elif minute - opened_at_minute.get(position.pk, minute) >= SIGNAL_CLOSE_AFTER:
                position_close(position=position, reason="SIGNAL", gateway=gateway)
    for position in Position.objects.filter(status="OPEN"):
        position_close(position=position, reason="SIGNAL", gateway=gateway)
    _record_flat_positions(gateway)
    incomes_sync(
        gateway=gateway,
        start=started - timedelta(minutes=1),
        end=timezone.now() + timedelta(minutes=1),
        income_type=Income.Type.FUNDING_FEE,
    )

    closed = list(Position.objects.filter(status="CLOSED").order_by("id"))
    reasons = Counter(p.close_reason for p in closed)
    assert len(closed) >= 20, reasons
    assert {"SL", "TP", "SIGNAL", "LIQUIDATION", "EMERGENCY"} <= set(reasons), reasons
    assert reasons["LIQUIDATION"] == 1 and reasons["EMERGENCY"] >= 1
    assert not Position.objects.filter(awaiting_fills=True).exists()
    assert Income.objects.filter(income_type="FUNDING_FEE").exists()
    assert gateway.fetch_positions() == []

    # Every exchange trade is in exactly one position's fills, and every fill is a trade.
    trades = {}
    for name in SYMBOLS:
        for trade in gateway.fetch_fills(symbol=name, since=started - timedelta(minutes=1)):
            trades[(name, trade.trade_id)] = trade
    fills = list(Fill.objects.select_related("symbol"))
    assert Counter((f.symbol.name, f.trade_id) for f in fills) == Counter(trades.keys())
    assert all(f.position_id is not None for f in fills)

    # Each position's PnL and fees equal the exchange's for its own orders.
    clearance = {
        e.tran_id: e
        for e in gateway.fetch_income(
            start=started - timedelta(minutes=1), end=timezone.now() + timedelta(minutes=1)
        )
        if e.income_type == "INSURANCE_CLEAR"
    }
    for position in closed:
        own = _exchange_trades_of(gateway, position, trades)
        fees = sum((t.commission for t in own), Decimal(0))
        realized = sum((t.realized_pnl for t in own), Decimal(0))
        if position.close_reason == "LIQUIDATION":
            realized += sum((e.amount for e in clearance.values()), Decimal(0))
        assert own, position
        assert abs(position.fees - fees) <= Decimal("1e-8"), position
        assert abs(position.realized_pnl - (realized - fees)) <= Decimal("1e-8"), position
        assert position.closed_at == max(t.time for t in own)

    # The sum of every position's PnL net of fees, plus funding, is the wallet's change.
    funding = sum((i.amount for i in Income.objects.filter(income_type="FUNDING_FEE")), Decimal(0))
    wallet_change = gateway.fetch_balance().wallet - START_BALANCE
    booked = sum((p.realized_pnl for p in closed), Decimal(0)) + funding
    assert abs(booked - wallet_change) <= Decimal("1e-8"), (booked, wallet_change)

    # No request was wasted on an exit the exchange had already finished.
    assert "-2011" not in replay.app.snapshot_stats()["rejections"]

    # Margin never over the cap on the fill price.
    for pk, cap in caps.items():
        entry = Order.objects.get(position_id=pk, purpose="ENTRY")
        position = Position.objects.get(pk=pk)
        assert entry.filled_quantity * entry.average_price / position.leverage <= cap, pk

    # Reconcile agrees: the money agrees.
    report = reconcile(repair=False)
    assert report.differences == [], [str(d) for d in report.differences]


def _record_flat_positions(gateway: ExchangeGateway) -> None:
    """What the guard does for a position gone from the exchange: record its close."""
    live = {p.symbol for p in gateway.fetch_positions()}
    for position in Position.objects.filter(status__in=("OPEN", "CLOSING")).select_related(
        "symbol"
    ):
        if position.symbol.name not in live:
            position_record_exchange_close(position=position, gateway=gateway)


def _liquidate_one(replay: PaperExchange, control: PaperControl, gateway: ExchangeGateway) -> bool:
    """The open BNBUSDT position loses its exits and the price jumps through its liquidation;
    False when BNBUSDT is flat now (tried again next cycle)."""
    position = Position.objects.filter(symbol__name="BNBUSDT", status="OPEN").first()
    if position is None:
        return False
    for order in position.orders.filter(is_conditional=True, status="OPEN"):
        assert gateway.cancel_order(
            symbol="BNBUSDT", client_order_id=order.client_order_id, conditional=True
        )
    price = replay.engine.last["BNBUSDT"]
    control.set_price("BNBUSDT", price * (Decimal("0.4") if position.side == "LONG" else 2))
    position_record_exchange_close(position=position, gateway=gateway)
    position.refresh_from_db()
    assert position.close_reason == "LIQUIDATION"
    # Back to the replay's price, as the next candle would.
    control.set_price("BNBUSDT", price)
    return True


def _emergency_close_with_one_stuck_closing() -> bool:
    """Both symbols open, one position's close answer lost (CLOSING): close everything. False
    when not both are open now (tried again next cycle)."""
    open_positions = list(Position.objects.filter(status="OPEN").order_by("id"))
    if len(open_positions) < 2:
        return False
    Position.objects.filter(pk=open_positions[0].pk).update(status="CLOSING")
    report = emergency_close_all(reason="replay test", actor="test")
    assert report.ok, [str(r) for r in report.results]
    trading_switch_set(enabled=True, reason="replay test resumes", actor="test")
    return True


def _exchange_trades_of(gateway: ExchangeGateway, position: Position, trades: dict) -> list:
    """The exchange's trades of the position's orders: each regular order by its id, each stop
    or target by the market order the exchange says it became."""
    ids = set()
    for order in position.orders.all():
        found = gateway.fetch_order(
            symbol=position.symbol.name,
            client_order_id=order.client_order_id,
            conditional=order.is_conditional,
        )
        if found is None:
            continue
        ids.add(found.actual_order_id if order.is_conditional else found.exchange_order_id)
    return [
        t for (name, _), t in trades.items() if name == position.symbol.name and t.order_id in ids
    ]
