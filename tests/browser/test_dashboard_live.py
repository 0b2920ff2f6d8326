"""The operator's path in Chromium: admin home → dashboard, which updates itself while a
position opens on the paper exchange, → the position's page with its chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from tests.support.exchange import fast_gateway
from trading.guard import guard_pass
from trading.models import Position, Symbol
from trading.services import position_open

pytestmark = pytest.mark.browser


@pytest.fixture
def market(paper: object, transactional_db: None) -> object:
    call_command("loaddata", "defaults", verbosity=0)
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "10000")
    return paper


def test_dashboard_when_position_opens_then_shown_without_reload_and_its_chart_marked(
    logged_in, market, artifacts: Path
) -> None:
    page = logged_in
    page.click("#dashboard-home-link a.section")
    page.wait_for_url("**/admin/dashboard/")
    assert page.locator("#no-open-position").is_visible()
    page.evaluate("window.arenaNotReloaded = true")

    outcome = position_open(symbol=Symbol.objects.get(name="BTCUSDT"), side="LONG", reason="ui")
    assert outcome.ok, outcome
    guard_pass(gateway=fast_gateway())

    row = page.locator("#positions tr.position-row[data-symbol=BTCUSDT]")
    row.wait_for(timeout=20_000)
    assert page.evaluate("window.arenaNotReloaded") is True  # updated in place
    assert "LONG" in row.inner_text() and "99700.0" in row.inner_text()
    assert "s ago" in page.locator("#data-age").inner_text()
    page.screenshot(path=str(artifacts / "dashboard_live.png"), full_page=True)

    page.goto("/admin/trading/position/")
    fits = page.evaluate(
        "document.querySelector('#result_list').getBoundingClientRect().right"
        " <= document.documentElement.clientWidth"
    )
    page.screenshot(path=str(artifacts / "positions_list.png"), full_page=True)
    assert fits, "the positions list is wider than the screen"

    page.goto("/admin/dashboard/")
    page.click("#positions a:text('BTCUSDT')")
    page.wait_for_url(f"**/admin/dashboard/position/{outcome.position.pk}/")
    entry = page.locator("#position-chart line[data-level=entry]")
    stop = page.locator("#position-chart line[data-level=stop-loss]")
    entry.wait_for(state="attached")  # a horizontal line has no height: "attached", not visible
    assert stop.count() == 1
    assert page.locator("#position-chart text.label-stop").is_visible()
    assert page.locator("#position-chart text.label-entry").is_visible()
    # The stop of a LONG is drawn below its entry (SVG y grows downwards).
    assert float(stop.get_attribute("y1")) > float(entry.get_attribute("y1"))
    assert "stop-loss 99700.0" in page.locator("#position-chart").inner_html()
    assert int(page.locator("#position-chart").get_attribute("data-candles")) > 0
    page.screenshot(path=str(artifacts / "position_page.png"), full_page=True)
    assert Position.objects.get(pk=outcome.position.pk).status == Position.Status.OPEN
