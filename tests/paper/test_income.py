"""Income history (``/fapi/v1/income``): every wallet movement, summing to the wallet exactly."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, DOGE, binance_code, position_amount, usdt

DAY_MS = 24 * 3600 * 1000


def _income(exchange: ccxt.binanceusdm, **params: object) -> list[dict[str, object]]:
    return exchange.fapiPrivateGetIncome(params)


def _ledger_total(exchange: ccxt.binanceusdm, since: int | None = None) -> Decimal:
    """The signed sum of every ledger entry ccxt parses (direction gives the sign)."""
    total = Decimal(0)
    for entry in exchange.fetch_ledger("USDT", since, 1000):
        amount = Decimal(entry["info"]["income"])
        assert Decimal(str(entry["amount"])) == abs(amount)
        assert entry["direction"] == ("in" if amount > 0 else "out")
        total += amount
    return total


def test_fetch_ledger_when_position_opened_and_closed_then_income_sums_to_wallet_change(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    before = usdt(exchange)
    exchange.create_order(BTC, "market", "buy", 0.013)
    control.set_price("BTCUSDT", "100123.4")
    exchange.create_order(BTC, "market", "sell", 0.007)
    control.set_price("BTCUSDT", "99876.5")
    exchange.create_order(BTC, "market", "sell", 0.006)

    after = usdt(exchange)
    assert position_amount(exchange, BTC) == 0
    assert after != before
    assert _ledger_total(exchange) == after - before


def test_income_when_fills_happen_then_pnl_and_commission_rows_name_each_trade(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.set_price("BTCUSDT", "101000")
    exchange.create_order(BTC, "market", "sell", 0.01)

    rows = _income(exchange, symbol="BTCUSDT")
    trades = exchange.fetch_my_trades(BTC)

    assert [(r["incomeType"], r["tradeId"]) for r in rows] == [
        ("COMMISSION", trades[0]["id"]),
        ("REALIZED_PNL", trades[1]["id"]),
        ("COMMISSION", trades[1]["id"]),
    ]
    assert rows[1]["income"] == "10.00000000"
    assert Decimal(rows[2]["income"]) == -Decimal(trades[1]["info"]["commission"])
    assert {r["asset"] for r in rows} == {"USDT"}
    assert len({r["tranId"] for r in rows}) == 3
    assert set(rows[0]) == {
        "symbol",
        "incomeType",
        "income",
        "asset",
        "info",
        "time",
        "tranId",
        "tradeId",
    }


def test_income_when_isolated_position_liquidated_then_clearance_keeps_the_sum_exact(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    before = usdt(exchange)
    exchange.set_margin_mode("isolated", BTC)
    exchange.set_leverage(3, BTC)  # margin 1/3 of the notional: not a round number
    exchange.create_order(BTC, "market", "buy", 0.007)

    control.set_price("BTCUSDT", "60000")

    assert position_amount(exchange, BTC) == 0
    types = [r["incomeType"] for r in _income(exchange)]
    assert "INSURANCE_CLEAR" in types
    assert types.count("COMMISSION") == 2  # the entry and the liquidation fill
    assert _ledger_total(exchange) == usdt(exchange) - before


def test_income_when_cross_account_liquidated_then_sum_matches_wallet_at_zero(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_balance("USDT", "120.123456789")
    exchange.set_leverage(20, BTC)
    exchange.create_order(BTC, "market", "buy", 0.02)

    control.set_price("BTCUSDT", "94100")

    assert position_amount(exchange, BTC) == 0
    rows = _income(exchange)
    assert rows[0]["incomeType"] == "TRANSFER"
    assert rows[0]["income"] == "-9879.87654321"  # the wallet's step is 1e-8
    assert _ledger_total(exchange) == usdt(exchange) - Decimal(10_000)
    assert usdt(exchange) == 0


def test_income_when_filtered_by_type_symbol_and_limit_then_only_matching_rows(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(DOGE, "market", "buy", 100)
    exchange.create_order(BTC, "market", "sell", 0.01)

    commissions = _income(exchange, incomeType="COMMISSION")
    doge = _income(exchange, symbol="DOGEUSDT")
    first = _income(exchange, limit=1)
    second_page = _income(exchange, limit=1, page=2)

    assert [r["symbol"] for r in commissions] == ["BTCUSDT", "DOGEUSDT", "BTCUSDT"]
    assert [r["incomeType"] for r in doge] == ["COMMISSION"]
    assert first == [commissions[0]]
    assert second_page == [commissions[1]]


def test_income_when_unknown_type_or_limit_out_of_range_then_rejected(
    exchange: ccxt.binanceusdm,
) -> None:
    for params in ({"incomeType": "FREE_MONEY"}, {"limit": 1001}):
        with pytest.raises(ccxt.BaseError) as caught:
            _income(exchange, **params)

        assert binance_code(caught.value) == -1130


def test_income_when_no_window_given_then_only_last_seven_days(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_funding_rate("BTCUSDT", "0")  # no funding rows while time jumps
    exchange.create_order(BTC, "market", "buy", 0.01)
    old = _income(exchange)[0]
    control.advance(8 * 24 * 3600)
    control.set_price("BTCUSDT", "100500")
    exchange.create_order(BTC, "market", "sell", 0.01)

    recent = _income(exchange)
    from_old = _income(exchange, startTime=old["time"])
    to_now = _income(exchange, endTime=recent[-1]["time"])

    assert old not in recent
    assert [r["incomeType"] for r in recent] == ["REALIZED_PNL", "COMMISSION"]
    assert from_old == [old]  # a start alone covers seven days from it
    assert old not in to_now  # an end alone covers seven days up to it
    assert len(_income(exchange, startTime=old["time"], endTime=recent[-1]["time"])) == 3


def test_fetch_ledger_when_since_given_then_entries_from_then_on(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_funding_rate("BTCUSDT", "0")  # the hour may cross a funding time
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.advance(3600)
    control.set_price("BTCUSDT", "99000")
    exchange.create_order(BTC, "market", "sell", 0.01)
    rows = _income(exchange)

    ledger = exchange.fetch_ledger("USDT", rows[-1]["time"])

    assert [e["info"]["tranId"] for e in ledger] == [r["tranId"] for r in rows[1:]]
    assert {e["type"] for e in ledger} == {"trade", "commission"}
