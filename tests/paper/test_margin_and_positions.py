"""Leverage, margin type, margin checks, PnL, balances and liquidation."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BNB, BTC, binance_code, position_amount, usdt


def test_set_leverage_when_within_brackets_then_applied(exchange: ccxt.binanceusdm) -> None:
    answer = exchange.set_leverage(10, BTC)

    assert answer["leverage"] == 10
    assert exchange.fetch_leverage(BTC)["longLeverage"] == 10


def test_set_leverage_when_above_symbol_max_then_rejected_with_4028(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.set_leverage(100, BNB)  # BNBUSDT's first bracket allows 75x

    assert binance_code(caught.value) == -4028
    assert "Leverage 100 is not valid" in str(caught.value)


def test_create_order_when_margin_short_then_rejected_with_2019(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_balance("USDT", "100")
    exchange.set_leverage(1, BTC)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "buy", 0.01)  # 1000 USDT at 1x

    assert binance_code(caught.value) == -2019
    assert "Margin is insufficient." in str(caught.value)


def test_create_order_when_leverage_covers_it_then_accepted(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_balance("USDT", "100")
    exchange.set_leverage(20, BTC)

    order = exchange.create_order(BTC, "market", "buy", 0.01)  # 50 USDT margin

    assert order["status"] == "closed"


def test_create_order_when_reduce_only_without_position_then_rejected_with_2022(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})

    assert binance_code(caught.value) == -2022
    assert "ReduceOnly Order is rejected." in str(caught.value)


def test_create_order_when_reduce_only_would_flip_then_rejected_with_2022(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "sell", 0.02, None, {"reduceOnly": True})

    assert binance_code(caught.value) == -2022


def test_create_order_when_reduce_only_same_side_then_rejected_with_2022(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"reduceOnly": True})

    assert binance_code(caught.value) == -2022


def test_set_margin_mode_when_unchanged_then_rejected_with_4046(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.options["setMarginMode"] = {"throwMarginModeAlreadySet": True}

    with pytest.raises(ccxt.MarginModeAlreadySet) as caught:
        exchange.set_margin_mode("cross", BTC)

    assert binance_code(caught.value) == -4046


def test_set_margin_mode_when_open_orders_then_rejected_with_4047(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.set_margin_mode("isolated", BTC)

    assert binance_code(caught.value) == -4047


def test_set_margin_mode_when_position_open_then_rejected_with_4048(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.set_margin_mode("isolated", BTC)

    assert binance_code(caught.value) == -4048


def test_fetch_positions_when_isolated_then_margin_is_notional_over_leverage(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_margin_mode("isolated", BTC)
    exchange.set_leverage(10, BTC)

    exchange.create_order(BTC, "market", "buy", 0.01)

    position = exchange.fetch_positions([BTC])[0]
    assert position["marginMode"] == "isolated"
    assert Decimal(position["info"]["isolatedWallet"]) == Decimal("100")
    assert position["liquidationPrice"] is not None
    assert 90_000 < position["liquidationPrice"] < 91_000


def test_fetch_positions_when_buying_twice_then_entry_price_averaged(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.set_price("BTCUSDT", "102000")

    exchange.create_order(BTC, "market", "buy", 0.01)

    position = exchange.fetch_positions([BTC])[0]
    assert position["entryPrice"] == 101_000
    assert position["contracts"] == 0.02
    assert position["side"] == "long"
    assert Decimal(position["info"]["unRealizedProfit"]) == Decimal("20")


def test_fetch_positions_when_flat_then_v3_lists_nothing(exchange: ccxt.binanceusdm) -> None:
    assert exchange.fetch_positions() == []


def test_fetch_balance_when_position_open_then_wallet_unrealized_and_available_reflect_it(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.set_leverage(10, BTC)
    exchange.create_order(BTC, "market", "buy", 0.01)  # fee 0.5, margin 100

    control.set_price("BTCUSDT", "99000")  # -10 unrealized

    assert usdt(exchange, "walletBalance") == Decimal("9999.5")
    assert usdt(exchange, "unrealizedProfit") == Decimal("-10")
    assert usdt(exchange, "availableBalance") == Decimal("9999.5") - 10 - Decimal("99")


def test_fetch_balance_when_short_closed_in_profit_then_wallet_grows_by_pnl_less_fees(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "sell", 0.01)
    control.set_price("BTCUSDT", "98000")

    exchange.create_order(BTC, "market", "buy", 0.01)

    assert usdt(exchange) == Decimal(10_000) + 20 - Decimal("0.5") - Decimal("0.49")
    assert position_amount(exchange, BTC) == 0


def test_isolated_position_when_price_hits_liquidation_then_margin_lost_and_flat(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.set_margin_mode("isolated", BTC)
    exchange.set_leverage(20, BTC)
    exchange.create_order(BTC, "market", "buy", 0.01)  # 50 USDT isolated margin
    stop = exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": 90_000, "closePosition": True}
    )

    control.set_price("BTCUSDT", "95000")

    assert position_amount(exchange, BTC) == 0
    assert usdt(exchange) == Decimal(10_000) - Decimal("0.5") - 50
    # The stop outlives the position under the default exit_on_flat "keep".
    assert exchange.fetch_order(stop["id"], BTC, {"trigger": True})["status"] == "open"
    orders = exchange.fetch_orders(BTC)
    assert orders[-1]["info"]["type"] == "LIQUIDATION"


def test_cross_position_when_margin_runs_out_then_liquidated(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_balance("USDT", "120")
    exchange.set_leverage(20, BTC)
    exchange.create_order(BTC, "market", "buy", 0.02)  # 2000 notional, 100 margin

    control.set_price("BTCUSDT", "94100")  # -118 against 119 of wallet, maint 7.5

    assert position_amount(exchange, BTC) == 0
    assert usdt(exchange) == 0


def test_fetch_position_mode_when_asked_then_one_way(exchange: ccxt.binanceusdm) -> None:
    assert exchange.fetch_position_mode(BTC)["hedged"] is False


def test_multi_assets_margin_when_queried_then_off(exchange: ccxt.binanceusdm) -> None:
    assert exchange.fapiPrivateGetMultiAssetsMargin() == {"multiAssetsMargin": False}


def test_set_position_mode_when_hedged_requested_with_position_open_then_rejected_with_4068(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.set_position_mode(True)

    assert binance_code(caught.value) == -4068
    assert exchange.fetch_position_mode(BTC)["hedged"] is False


def test_fetch_leverage_tiers_when_asked_then_binance_brackets(
    exchange: ccxt.binanceusdm,
) -> None:
    tiers = exchange.fetch_leverage_tiers([BTC])[BTC]

    assert tiers[0]["maxLeverage"] == 125
    assert tiers[0]["maxNotional"] == 50_000
    assert tiers[0]["maintenanceMarginRate"] == 0.004
