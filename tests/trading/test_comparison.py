"""The one comparison of the exchange with the book: pure inputs, every kind of divergence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading.comparison import SETTLE_GRACE, SL, TP, Kind, divergences, exit_on_exchange

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Held:
    symbol: str
    side: str
    quantity: Decimal
    mark_price: Decimal = Decimal("100")
    unrealized_pnl: Decimal = Decimal("0")


@dataclass(frozen=True)
class Open:
    side: str
    order_type: str
    reduce_only: bool = False
    close_position: bool = True


@dataclass(frozen=True)
class Record:
    status: str
    side: str
    quantity: Decimal
    opened_at: datetime
    entry_price: Decimal | None = Decimal("100")


LONG = Held("BTCUSDT", "LONG", Decimal("0.011"))
BOTH_EXITS = [Open("SELL", "STOP_MARKET"), Open("SELL", "TAKE_PROFIT_MARKET")]
SETTLED = NOW - SETTLE_GRACE - timedelta(seconds=1)
YOUNG = NOW - timedelta(seconds=5)


def kinds(found) -> list[tuple[str, str]]:
    return [(d.kind.value, d.exit_kind) for d in found]


def test_exit_on_exchange_when_other_side_or_not_reduce_only_then_not_an_exit() -> None:
    wrong_side = [Open("BUY", "STOP_MARKET")]
    opens_more = [Open("SELL", "STOP_MARKET", reduce_only=False, close_position=False)]
    reduce_only = [Open("SELL", "STOP", reduce_only=True, close_position=False)]

    assert not exit_on_exchange(held=LONG, orders=wrong_side, kind=SL)
    assert not exit_on_exchange(held=LONG, orders=opens_more, kind=SL)
    assert exit_on_exchange(held=LONG, orders=reduce_only, kind=SL)
    assert not exit_on_exchange(held=LONG, orders=reduce_only, kind=TP)


def test_divergences_when_book_and_exchange_agree_then_none() -> None:
    record = Record("OPEN", "LONG", Decimal("0.011"), SETTLED)

    found = divergences(
        held={"BTCUSDT": LONG}, orders={"BTCUSDT": BOTH_EXITS}, records={"BTCUSDT": record}, now=NOW
    )

    assert found == []


def test_divergences_when_held_without_record_then_unrecorded_and_both_exits_missing() -> None:
    found = divergences(held={"BTCUSDT": LONG}, orders={}, records={}, now=NOW)

    assert kinds(found) == [
        ("exit missing", SL),
        ("exit missing", TP),
        ("unrecorded position", ""),
    ]


def test_divergences_when_record_not_open_then_exits_still_required_by_what_is_held() -> None:
    closing = Record("CLOSING", "LONG", Decimal("0.011"), SETTLED)

    found = divergences(held={"BTCUSDT": LONG}, orders={}, records={"BTCUSDT": closing}, now=NOW)

    assert kinds(found) == [
        ("exit missing", SL),
        ("exit missing", TP),
        ("status contradicted", ""),
    ]


def test_divergences_when_record_young_then_flat_or_contradiction_given_the_grace() -> None:
    opening = Record("OPENING", "LONG", Decimal("0.011"), YOUNG)
    open_young = Record("OPEN", "LONG", Decimal("0.011"), YOUNG)

    held_opening = divergences(
        held={"BTCUSDT": LONG},
        orders={"BTCUSDT": BOTH_EXITS},
        records={"BTCUSDT": opening},
        now=NOW,
    )
    flat_young = divergences(held={}, orders={}, records={"BTCUSDT": open_young}, now=NOW)
    flat_settled = divergences(
        held={}, orders={}, records={"BTCUSDT": open_young}, now=NOW + SETTLE_GRACE
    )

    assert held_opening == []
    assert flat_young == []
    assert kinds(flat_settled) == [("position missing", "")]


def test_divergences_when_exit_on_its_way_then_not_missing_but_the_other_is() -> None:
    record = Record("OPEN", "LONG", Decimal("0.011"), SETTLED)

    found = divergences(
        held={"BTCUSDT": LONG},
        orders={},
        records={"BTCUSDT": record},
        now=NOW,
        exit_on_its_way=lambda position, kind: kind == TP,
    )

    assert kinds(found) == [("exit missing", SL)]


def test_divergences_when_quantity_or_pnl_differ_then_mismatch_or_drift() -> None:
    smaller = Record("OPEN", "LONG", Decimal("0.010"), SETTLED)
    wrong_entry = Record("OPEN", "LONG", Decimal("0.011"), SETTLED, entry_price=Decimal("90"))

    mismatch = divergences(
        held={"BTCUSDT": LONG},
        orders={"BTCUSDT": BOTH_EXITS},
        records={"BTCUSDT": smaller},
        now=NOW,
        pnl_drift_limit=Decimal("0.01"),
    )
    drift = divergences(
        held={"BTCUSDT": LONG},
        orders={"BTCUSDT": BOTH_EXITS},
        records={"BTCUSDT": wrong_entry},
        now=NOW,
        pnl_drift_limit=Decimal("0.01"),
    )

    assert kinds(mismatch) == [("quantity mismatch", "")]
    assert [d.kind for d in drift] == [Kind.PNL_DRIFT]
    assert drift[0].ours == Decimal("0.110") and drift[0].drift == Decimal("0.110")
