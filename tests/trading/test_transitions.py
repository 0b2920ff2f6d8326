"""Position and order statuses have one owner, ``trading.transitions``: every legal move works
and writes one event row, every other move raises and changes nothing, two movers racing for the
same row cannot both win, and no other module of the project writes a status.

Binance's order statuses are read in one place too (``exchange.gateway.order_status_parse``).
"""

from __future__ import annotations

import ast
import multiprocessing
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from core.errors import IllegalTransition
from exchange.gateway import ExchangeGateway, ExchangeOrder, OrderState, order_status_parse
from tests.trading.transition_race import move_after_barrier
from trading.models import Order, Position, StatusChange, Symbol
from trading.services import CloseOutcome, position_close, position_open
from trading.transitions import (
    ORDER_MOVES,
    POSITION_MOVES,
    order_create,
    order_transition,
    orders_transition,
    position_create,
    position_transition,
)

ROOT = Path(__file__).resolve().parents[2]

POSITION_LEGAL = sorted((old, new) for old, moves in POSITION_MOVES.items() for new in moves)
POSITION_ILLEGAL = sorted(
    (old, new)
    for old in Position.Status.values
    for new in Position.Status.values
    if old != new and new not in POSITION_MOVES[old]
)
ORDER_LEGAL = sorted((old, new) for old, moves in ORDER_MOVES.items() for new in moves)
ORDER_ILLEGAL = sorted(
    (old, new)
    for old in Order.Status.values
    for new in Order.Status.values
    if old != new and new not in ORDER_MOVES[old]
)


@pytest.fixture
def btc(db: None) -> Symbol:
    """A symbol row of its own (the default rules are not needed to move rows)."""
    return Symbol.objects.create(
        name="BTCUSDT",
        base_asset="BTC",
        tick_size=Decimal("0.1"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1000"),
        market_step_size=Decimal("0.001"),
        market_min_qty=Decimal("0.001"),
        market_max_qty=Decimal("120"),
        min_notional=Decimal("100"),
        price_precision=2,
        quantity_precision=3,
        max_leverage=125,
    )


def _position(symbol: Symbol, status: str) -> Position:
    # Tests build their worlds directly; the project's code may not (see the scan below).
    return Position.objects.create(
        symbol=symbol,
        side="LONG",
        status=status,
        quantity=Decimal("0.011"),
        entry_price=Decimal("100000"),
        leverage=2,
        margin_type="ISOLATED",
    )


def _order(symbol: Symbol, status: str, client_order_id: str = "arena-test-1") -> Order:
    return Order.objects.create(
        symbol=symbol,
        purpose=Order.Purpose.STOP_LOSS,
        side="SELL",
        order_type="STOP_MARKET",
        stop_price=Decimal("99000"),
        close_position=True,
        is_conditional=True,
        client_order_id=client_order_id,
        status=status,
    )


# --------------------------------------------------------------------------- the tables
def test_tables_when_read_then_every_status_has_a_row_and_the_race_is_legal() -> None:
    assert set(POSITION_MOVES) == set(Position.Status.values)
    assert set(ORDER_MOVES) == set(Order.Status.values)
    # Staying put is not a move (it writes no event): no status lists itself.
    assert all(old not in moves for old, moves in (*POSITION_MOVES.items(), *ORDER_MOVES.items()))
    assert POSITION_MOVES[Position.Status.OPENING] >= {"OPEN", "FAILED"}
    assert POSITION_MOVES[Position.Status.OPEN] >= {"CLOSING", "CLOSED"}
    assert POSITION_MOVES[Position.Status.CLOSING] == {"OPEN", "CLOSED"}
    assert not POSITION_MOVES[Position.Status.CLOSED] and not POSITION_MOVES["FAILED"]
    assert Order.Status.FILLED in ORDER_MOVES[Order.Status.CANCELED]
    assert not ORDER_MOVES[Order.Status.FILLED] and not ORDER_MOVES[Order.Status.REJECTED]


@pytest.mark.parametrize(("old", "new"), POSITION_LEGAL)
def test_position_transition_when_legal_then_moved_with_one_event_row(
    btc: Symbol, old: str, new: str
) -> None:
    # Arrange
    position = _position(btc, old)

    # Act
    moved = position_transition(
        position, new, reason="because", actor="tester", fields={"quantity": Decimal("0.005")}
    )

    # Assert
    assert moved is True
    assert position.status == new
    stored = Position.objects.get(pk=position.pk)
    assert (stored.status, stored.quantity) == (new, Decimal("0.005"))
    changes = list(StatusChange.objects.values_list("from_status", "to_status", "reason", "actor"))
    assert changes == [(old, new, "because", "tester")]
    assert StatusChange.objects.get().position_id == position.pk


@pytest.mark.parametrize(("old", "new"), POSITION_ILLEGAL)
def test_position_transition_when_illegal_then_raises_and_nothing_changes(
    btc: Symbol, old: str, new: str
) -> None:
    position = _position(btc, old)

    with pytest.raises(IllegalTransition, match=f"{old} -> {new}"):
        position_transition(
            position, new, reason="no", actor="tester", fields={"quantity": Decimal("0.005")}
        )

    stored = Position.objects.get(pk=position.pk)
    assert (stored.status, stored.quantity) == (old, Decimal("0.011"))
    assert position.status == old
    assert not StatusChange.objects.exists()


@pytest.mark.parametrize(("old", "new"), ORDER_LEGAL)
def test_order_transition_when_legal_then_moved_with_one_event_row(
    btc: Symbol, old: str, new: str
) -> None:
    order = _order(btc, old)

    moved = order_transition(
        order, new, reason="because", actor="tester", fields={"error_message": "noted"}
    )

    assert moved is True
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.error_message) == (new, "noted")
    changes = list(StatusChange.objects.values_list("from_status", "to_status", "reason", "actor"))
    assert changes == [(old, new, "because", "tester")]
    assert StatusChange.objects.get().order_id == order.pk


@pytest.mark.parametrize(("old", "new"), ORDER_ILLEGAL)
def test_order_transition_when_illegal_then_raises_and_nothing_changes(
    btc: Symbol, old: str, new: str
) -> None:
    order = _order(btc, old)

    with pytest.raises(IllegalTransition, match=f"{old} -> {new}"):
        order_transition(order, new, reason="no", fields={"error_message": "noted"}, follow=True)

    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.error_message) == (old, "")
    assert not StatusChange.objects.exists()


@pytest.mark.parametrize("status", Position.Status.values)
def test_position_transition_when_same_status_then_no_event_and_fields_written(
    btc: Symbol, status: str
) -> None:
    position = _position(btc, status)

    moved = position_transition(
        position, status, reason="again", actor="tester", fields={"quantity": Decimal("0.002")}
    )

    assert moved is True
    assert Position.objects.get(pk=position.pk).quantity == Decimal("0.002")
    assert not StatusChange.objects.exists()


def test_order_transition_when_same_answer_twice_then_one_event(btc: Symbol) -> None:
    order = _order(btc, Order.Status.SENT)

    first = order_transition(order, Order.Status.OPEN, reason="NEW", follow=True)
    second = order_transition(order, Order.Status.OPEN, reason="NEW", follow=True)

    assert first and second
    assert StatusChange.objects.count() == 1


# --------------------------------------------------------------------------- races
def test_position_transition_when_row_moved_since_read_then_false_and_unchanged(
    btc: Symbol,
) -> None:
    # Arrange: read OPEN; someone else moves it to CLOSING
    position = _position(btc, Position.Status.OPEN)
    position_transition(
        Position.objects.get(pk=position.pk), "CLOSING", reason="first", actor="other"
    )

    # Act
    moved = position_transition(position, Position.Status.CLOSED, reason="late", actor="me")

    # Assert: the first mover's status stands, ours is not written, the object says why
    assert moved is False
    assert position.status == Position.Status.CLOSING
    assert Position.objects.get(pk=position.pk).status == Position.Status.CLOSING
    assert list(StatusChange.objects.values_list("to_status", "actor")) == [("CLOSING", "other")]


def test_order_transition_when_cancel_recorded_then_fill_reported_then_filled(
    btc: Symbol,
) -> None:
    # Arrange: read OPEN by the order path; the guard records a cancel meanwhile
    order = _order(btc, Order.Status.OPEN)
    orders_transition(Order.objects.filter(pk=order.pk), "CANCELED", reason="orphan", actor="g")

    # Act: the exchange's answer says the order filled before the cancel arrived
    moved = order_transition(order, Order.Status.FILLED, reason="FILLED", follow=True)

    # Assert
    assert moved is True
    assert Order.objects.get(pk=order.pk).status == Order.Status.FILLED
    assert list(StatusChange.objects.values_list("from_status", "to_status")) == [
        ("OPEN", "CANCELED"),
        ("CANCELED", "FILLED"),
    ]


def test_order_transition_when_stale_answer_after_fill_then_filled_stays(btc: Symbol) -> None:
    order = _order(btc, Order.Status.SENT)
    order_transition(Order.objects.get(pk=order.pk), "FILLED", reason="fill", follow=True)

    moved = order_transition(order, Order.Status.OPEN, reason="stale NEW", follow=True)

    assert moved is False
    assert order.status == Order.Status.FILLED
    assert Order.objects.get(pk=order.pk).status == Order.Status.FILLED
    assert StatusChange.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_position_transition_when_two_processes_close_at_once_then_exactly_one_wins(
    defaults: None,
) -> None:
    # Arrange: one OPEN position per symbol, each raced for by two processes
    symbols = list(Symbol.objects.order_by("name")[:4])
    ids = [_position(symbol, Position.Status.OPEN).pk for symbol in symbols]
    db = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": "arena.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    movers = [
        context.Process(target=move_after_barrier, args=(barrier, results, env, ids, to))
        for to in ("CLOSING", "CLOSED")  # plain text: the child unpickles before django.setup
    ]

    # Act
    for mover in movers:
        mover.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * len(ids))]
    for mover in movers:
        mover.join(timeout=60)

    # Assert: per position one winner, whose status is stored with its one event row
    for position_id in ids:
        won = [to for pid, to, moved in outcomes if pid == position_id and moved]
        assert len(won) == 1, outcomes
        assert Position.objects.get(pk=position_id).status == won[0]
        changes = StatusChange.objects.filter(position_id=position_id)
        assert list(changes.values_list("from_status", "to_status")) == [("OPEN", won[0])]


# --------------------------------------------------------------------------- creation
def test_position_create_when_adopted_open_then_event_from_nothing(btc: Symbol) -> None:
    position = position_create(
        status=Position.Status.OPEN,
        reason="adopted",
        actor="guard",
        symbol=btc,
        side="LONG",
        quantity=Decimal("0.011"),
        entry_price=Decimal("100000"),
        leverage=2,
        margin_type="ISOLATED",
        adopted=True,
    )

    assert Position.objects.get(pk=position.pk).status == Position.Status.OPEN
    assert list(position.status_changes.values_list("from_status", "to_status")) == [("", "OPEN")]


@pytest.mark.parametrize("status", ["CLOSING", "CLOSED", "FAILED"])
def test_position_create_when_not_a_starting_status_then_raises(btc: Symbol, status: str) -> None:
    with pytest.raises(IllegalTransition):
        position_create(status=status, reason="no", actor="t", symbol=btc, side="LONG")
    assert not Position.objects.exists()


def test_order_create_when_sent_then_raises(btc: Symbol) -> None:
    with pytest.raises(IllegalTransition):
        order_create(status=Order.Status.SENT, reason="no", actor="t", symbol=btc)
    assert not Order.objects.exists()


def test_admin_when_a_position_moved_then_its_move_is_listed(btc: Symbol, admin_client) -> None:
    position = _position(btc, Position.Status.OPEN)
    position_transition(position, Position.Status.CLOSING, reason="closing by hand", actor="ops")

    response = admin_client.get("/admin/trading/statuschange/")

    assert response.status_code == 200
    assert "closing by hand" in response.content.decode()


# --------------------------------------------------------------------------- the order path
@pytest.mark.django_db(transaction=True)
def test_close_when_exchange_holds_more_than_closed_then_closing_to_open_has_an_event_row(
    scenario_market: object, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: an open long; the moment our close is sent, someone adds 0.002 BTC by hand
    btc = Symbol.objects.get(name="BTCUSDT")
    position = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway
    ).position
    hand = recording_gateway.clone()

    class AddsBeforeClose:
        def __getattr__(self, name: str) -> object:
            return getattr(recording_gateway, name)

        def create_market_order(self, **kwargs: object) -> ExchangeOrder:
            if kwargs["reduce_only"]:
                hand.create_market_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    quantity=Decimal("0.002"),
                    client_order_id="by-hand-1",
                    reduce_only=False,
                )
            return recording_gateway.create_market_order(**kwargs)

    # Act
    outcome = position_close(
        position=position, reason="MANUAL", forced_event=True, gateway=AddsBeforeClose()
    )

    # Assert: back to OPEN with what the exchange still holds, and the move is recorded
    assert outcome.status == CloseOutcome.PARTIAL, outcome
    position.refresh_from_db()
    assert (position.status, position.quantity) == (Position.Status.OPEN, Decimal("0.002"))
    moves = list(position.status_changes.values_list("from_status", "to_status", "reason"))
    assert [m[:2] for m in moves] == [("OPENING", "OPEN"), ("OPEN", "CLOSING"), ("CLOSING", "OPEN")]
    assert moves[2][2].startswith("close filled 0.011, 0.002"), moves


# --------------------------------------------------------------------------- Binance statuses
@pytest.mark.parametrize(
    ("reported", "ours"),
    [
        ("NEW", "OPEN"),
        ("PARTIALLY_FILLED", "OPEN"),
        ("FILLED", "FILLED"),
        ("CANCELED", "CANCELED"),
        ("EXPIRED", "EXPIRED"),
        ("EXPIRED_IN_MATCH", "EXPIRED"),
        ("REJECTED", "REJECTED"),
        ("TRIGGERING", "OPEN"),
        ("TRIGGERED", "TRIGGERED"),
        ("FINISHED", "TRIGGERED"),
        ("open", "OPEN"),
        ("closed", "FILLED"),
        ("canceled", "CANCELED"),
        ("expired", "EXPIRED"),
        ("rejected", "REJECTED"),
        ("SOMETHING_NEW", "UNKNOWN"),
    ],
)
def test_order_status_parse_when_exchange_reports_then_our_status(reported: str, ours: str) -> None:
    assert order_status_parse(reported) == ours


def test_order_states_when_parsed_by_the_gateway_then_each_is_a_status_of_our_orders() -> None:
    assert {state.value for state in OrderState} <= set(Order.Status.values)


# Words only Binance uses (ours are OPEN, FILLED, ...): none may appear as a value outside the
# gateway, or a second mapping has crept in.
BINANCE_ONLY = {"PARTIALLY_FILLED", "TRIGGERING", "FINISHED", "EXPIRED_IN_MATCH", "NEW"}


# --------------------------------------------------------------------------- the scan
# Modules outside the rule: the tests (they build their worlds), the paper exchange (the venue:
# its orders are Binance's, not our rows) and migrations.
# var/ holds what the tests and make run generate (a production venv among them).
EXCLUDED_DIRS = {
    ".venv",
    "var",
    "staticfiles",
    "tests",
    "paper",
    "migrations",
    "node_modules",
    ".git",
}
OWNER = "trading/transitions.py"
WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}
# Creating a row in its model's initial status is allowed anywhere.
INITIAL = {"Position.Status.OPENING", "Order.Status.INTENT"}
# Other things called status: (module, the expression written to).
ALLOWED = {
    ("exchange/gateway.py", "self._last.status"),  # the HTTP status of the last answer
    ("bench/soak.py", "spec.update"),  # a fault's HTTP status in the bench's soak plan
}


def status_writes(path: str, source: str) -> list[str]:
    """Every place in ``source`` that writes a ``status`` other than through the owner."""
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                text = ast.unparse(target)
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    if (path, text) not in ALLOWED:
                        flag(node, f"{text} = ...")
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.slice, ast.Constant)
                    and target.slice.value == "status"
                ):
                    flag(node, f"{text} = ...")
        elif isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value == "status" for k in node.keys):
                flag(node, "a dict of changes with a status")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (path, ast.unparse(func)) in ALLOWED:
                continue
            if name == "setattr" and any(
                isinstance(a, ast.Constant) and a.value == "status" for a in node.args
            ):
                flag(node, "setattr(..., 'status', ...)")
            model_call = name in WRITERS or name in {"Position", "Order", "dict"}
            for keyword in node.keywords:
                if keyword.arg == "status" and model_call:
                    value = ast.unparse(keyword.value)
                    if not (name == "create" and value in INITIAL):
                        flag(node, f"{ast.unparse(func)}(status={value})")
                if keyword.arg == "update_fields" and "'status'" in ast.unparse(keyword.value):
                    flag(node, "save(update_fields=[..., 'status'])")
            if name == "bulk_update" and "'status'" in ast.unparse(node):
                flag(node, "bulk_update(..., ['status'])")
    return found


def binance_status_reads(path: str, source: str) -> list[str]:
    """Every Binance order status word used as a value (docstrings and comments aside)."""
    return [
        f"{path}:{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and node.value in BINANCE_ONLY
    ]


def project_modules() -> list[tuple[str, str]]:
    modules = []
    for file in sorted(ROOT.rglob("*.py")):
        relative = file.relative_to(ROOT)
        if EXCLUDED_DIRS & set(relative.parts):
            continue
        modules.append((relative.as_posix(), file.read_text()))
    return modules


def test_scan_when_every_project_module_read_then_only_the_owner_writes_a_status() -> None:
    modules = project_modules()
    assert {"trading/services/exit.py", "trading/guard.py", "bench/env.py"} <= {
        p for p, _ in modules
    }

    writes = [w for path, source in modules if path != OWNER for w in status_writes(path, source)]

    assert writes == []


def test_scan_when_every_project_module_read_then_binance_statuses_parsed_in_the_gateway_only() -> (
    None
):
    reads = [
        r
        for path, source in project_modules()
        if path != "exchange/gateway.py"
        for r in binance_status_reads(path, source)
    ]

    assert reads == []


def test_scan_when_code_writes_a_status_then_each_way_is_found() -> None:
    # Arrange: every way of writing a status the scan must catch, and what it must let through
    source = """
position.status = Position.Status.OPEN
Position.objects.filter(pk=1).update(status="CLOSED")
Order.objects.filter(pk=1).update(**{"status": "FILLED"})
changes["status"] = Order.Status.FILLED
setattr(order, "status", "FILLED")
order.save(update_fields=["status", "updated_at"])
Order.objects.get_or_create(client_order_id="x", defaults=dict(status="FILLED"))
Position.objects.create(symbol=s, status=Position.Status.OPEN)
Order.objects.bulk_update(orders, ["status"])
Position.objects.create(symbol=s, status=Position.Status.OPENING)
Order.objects.filter(status=Order.Status.OPEN).count()
"""

    # Act
    found = status_writes("trading/example.py", source)

    # Assert: one finding per write line (2 to 10), none for the initial status or the filter
    assert sorted({int(f.split(":")[1]) for f in found}) == list(range(2, 11)), found
    assert status_writes("exchange/gateway.py", "self._last.status = 429") == []
