"""Numbers as traders read them: one formatter, used by the admin lists and the log lines."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from core.formatting import duration_text, money_text, price_text, quantity_text
from tests.support.exchange import fast_gateway
from trading.guard import guard_pass
from trading.models import Symbol


@pytest.fixture
def operator_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw"))
    return client


def test_price_text_when_symbol_given_then_on_its_tick(defaults: None) -> None:
    btc, bnb = Symbol.objects.get(name="BTCUSDT"), Symbol.objects.get(name="BNBUSDT")

    assert price_text(Decimal("99700.0000000000"), btc) == "99700.0"
    assert price_text(Decimal("1010.5700000000"), bnb) == "1010.57"
    assert quantity_text(Decimal("0.0110000000"), btc) == "0.011"
    assert quantity_text(Decimal("1.1800000000"), bnb) == "1.18"


def test_money_text_when_fractions_of_cent_then_rounded_to_cent_without_negative_zero() -> None:
    assert money_text(Decimal("-3.2999")) == "-3.30"
    assert money_text(Decimal("-0.004")) == "0.00"
    assert money_text(Decimal("1833.333"), grouped=True) == "1,833.33"
    assert money_text(None) == "—"


def test_duration_text_when_seconds_then_trader_units() -> None:
    assert [duration_text(s) for s in (42, 420, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "42 s",
        "7 min",
        "3 h 05",
        "2 d 4 h",
    ]


def test_positions_list_when_loaded_then_tick_step_cent_and_coloured_side(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")

    response = operator_client.get(reverse("admin:trading_position_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "0000000" not in html  # no column shows the ten stored decimals
    assert "99700.0" in html and "100500.0" in html
    assert 'style="color:#2e7d32">LONG' in html and 'style="color:#c62828">SHORT' in html
    assert reverse("dashboard_position", args=[1]).rsplit("/", 2)[0] in html


def test_positions_list_when_filtered_by_side_or_searched_then_only_matching(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")
    url = reverse("admin:trading_position_changelist")

    by_side = operator_client.get(url, {"side__exact": "SHORT"})
    by_search = operator_client.get(url, {"q": "BTC"})

    assert [p.symbol.name for p in by_side.context["cl"].result_list] == ["BNBUSDT"]
    assert [p.symbol.name for p in by_search.context["cl"].result_list] == ["BTCUSDT"]


def test_close_log_line_when_stop_fires_then_names_the_symbol(
    funded_market, open_position, caplog: pytest.LogCaptureFixture
) -> None:
    open_position("BNBUSDT", "SHORT")
    funded_market.set_price("BNBUSDT", "968")  # through the SHORT's stop at 966.8

    with caplog.at_level(logging.INFO):
        guard_pass(gateway=fast_gateway())

    closes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[Close]")]
    assert len(closes) == 1 and closes[0].startswith("[Close] BNBUSDT SL @ ")
    assert closes[0].endswith(" USDT") and "." in closes[0].split("PnL ")[1]


def test_position_and_order_pages_when_viewed_then_no_ten_decimal_numbers(
    operator_client: Client, funded_market, open_position
) -> None:
    position = open_position("BNBUSDT", "SHORT")
    order = position.orders.order_by("id").first()

    position_page = operator_client.get(
        reverse("admin:trading_position_change", args=[position.pk])
    )
    order_page = operator_client.get(reverse("admin:trading_order_change", args=[order.pk]))

    for page in (position_page, order_page):
        html = page.content.decode()
        assert page.status_code == 200
        assert "0000000" not in html
    assert "966.89" in position_page.content.decode() and "1.24" in order_page.content.decode()


def test_symbol_form_when_opened_then_filters_shown_as_written(
    operator_client: Client, defaults: None
) -> None:
    btc = Symbol.objects.get(name="BTCUSDT")
    url = reverse("admin:trading_symbol_change", args=[btc.pk])

    html = operator_client.get(url).content.decode()

    assert 'name="tick_size" value="0.1"' in html
    assert "0000000" not in html
