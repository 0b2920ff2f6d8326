"""Account rules: hedge mode, client order ids, algo statuses, the userTrades window, feeBurn."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, binance_code, position_amount


def test_set_position_mode_when_flat_then_hedged_and_orders_need_position_side(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_position_mode(True)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "buy", 0.01)

    assert exchange.fetch_position_mode(BTC)["hedged"] is True
    assert exchange.fapiPrivateGetAccountConfig()["dualSidePosition"] is True
    assert binance_code(caught.value) == -4061
    assert position_amount(exchange, BTC) == 0


def test_set_position_mode_when_order_open_then_rejected_with_4067(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.set_position_mode(True)

    assert binance_code(caught.value) == -4067


def test_set_position_mode_when_switched_back_then_one_way_orders_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_position_mode(True)
    exchange.set_position_mode(False)

    exchange.create_order(BTC, "market", "buy", 0.01)

    assert position_amount(exchange, BTC) == Decimal("0.01")


def test_create_order_when_client_id_of_open_plain_order_reused_then_rejected_with_4116(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000, {"clientOrderId": "entry-7"})

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.01, 98_000, {"clientOrderId": "entry-7"})

    assert binance_code(caught.value) == -4116
    assert len(exchange.fetch_open_orders(BTC)) == 1


def test_create_algo_when_client_id_of_open_plain_order_reused_then_rejected_with_4116(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(BTC, "limit", "sell", 0.01, 101_000, {"clientOrderId": "exit-7"})

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(
            BTC,
            "market",
            "sell",
            None,
            None,
            {"stopLossPrice": 95_000, "closePosition": True, "clientOrderId": "exit-7"},
        )

    assert binance_code(caught.value) == -4116


def test_create_order_when_client_id_of_filled_order_reused_then_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-8"})

    again = exchange.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-8"})

    assert again["status"] == "closed"  # only open orders hold their id


def test_triggered_stop_when_margin_short_then_algo_rejected_without_order(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.set_leverage(1, BTC)
    algo = exchange.create_order(BTC, "market", "buy", 0.05, None, {"stopLossPrice": 101_000})
    control.set_balance("USDT", "100")

    control.set_price("BTCUSDT", "101500")

    info = exchange.fetch_order(algo["id"], BTC, {"trigger": True})["info"]
    assert info["algoStatus"] == "REJECTED"
    assert info["actualOrderId"] == ""
    assert position_amount(exchange, BTC) == 0


def test_fetch_my_trades_when_no_window_then_last_seven_days_only(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_funding_rate("BTCUSDT", "0")
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.advance(8 * 24 * 3600)
    exchange.create_order(BTC, "market", "sell", 0.01)

    trades = exchange.fetch_my_trades(BTC)

    assert [t["side"] for t in trades] == ["sell"]


def test_fetch_my_trades_when_window_longer_than_seven_days_then_rejected_with_1127(
    exchange: ccxt.binanceusdm,
) -> None:
    now = exchange.milliseconds()

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fetch_my_trades(BTC, now - 8 * 86_400_000, None, {"until": now})

    assert binance_code(caught.value) == -1127


def test_commission_when_fee_burn_on_and_bnb_held_then_paid_in_bnb_with_discount(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_balance("BNB", "1")
    exchange.fapiPrivatePostFeeBurn({"feeBurn": "true"})
    usdt_before = Decimal(exchange.fetch_balance()["info"]["totalWalletBalance"])

    exchange.create_order(BTC, "market", "buy", 0.01)  # 0.5 USDT of fee, 0.45 after discount

    trade = exchange.fetch_my_trades(BTC)[-1]["info"]
    assert trade["commissionAsset"] == "BNB"
    assert Decimal(trade["commission"]) == Decimal("0.00046680")  # 0.45 / 964
    assert exchange.fapiPrivateGetFeeBurn()["feeBurn"] is True
    fees = exchange.fapiPrivateGetIncome({"incomeType": "COMMISSION"})
    assert [(f["asset"], f["income"]) for f in fees] == [("BNB", "-0.00046680")]
    usdt_after = Decimal(exchange.fetch_balance()["info"]["totalWalletBalance"])
    assert usdt_after == usdt_before


def test_commission_when_fee_burn_on_but_no_bnb_then_paid_in_usdt(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.fapiPrivatePostFeeBurn({"feeBurn": "true"})

    exchange.create_order(BTC, "market", "buy", 0.01)

    assert exchange.fetch_my_trades(BTC)[-1]["info"]["commissionAsset"] == "USDT"
