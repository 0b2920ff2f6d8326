"""The dashboard shows the user data stream beside the guard and sentinel heartbeats: connected,
reconnecting, down or never ran, its last event, lag and last gap reconcile; down once it has
been silent or disconnected for longer than the sentinel's limit. Its state is read-only in the
admin: the stream process writes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from monitoring.sentinel import STREAM_DOWN_AFTER
from trading.models import StreamState
from trading.stream import STOPPED, stream_state_report

PASSWORD = "stream-watcher-1"


@pytest.fixture
def operator_client(db: None) -> Client:
    user = User.objects.create_superuser("operator", "op@example.com", PASSWORD)
    client = Client()
    # The login throttle's backend needs the request a test client's login does not build.
    assert client.login(
        request=RequestFactory().post("/admin/login/"), username=user.username, password=PASSWORD
    )
    return client


def _live(client: Client) -> tuple[object, str]:
    response = client.get(reverse("dashboard_live"))
    assert response.status_code == 200
    return response.context["stream"], response.content.decode()


def _stream_row(html: str) -> str:
    start = html.index('<tr class="stream-state')
    return html[start : html.index("</tr>", start)]


def test_dashboard_when_stream_connected_then_connected_with_last_event_age_and_lag(
    operator_client: Client,
) -> None:
    # Arrange: the process reported 2 s ago; its last event arrived 7 s ago, 42 ms late.
    with time_machine.travel(timezone.now(), tick=False) as clock:
        now = timezone.now()
        stream_state_report(
            connected=True,
            last_event_at=now - timedelta(seconds=5),
            lag_ms=42,
            events=12,
            reconciles=3,
            last_reconcile_at=now - timedelta(seconds=20),
        )
        clock.shift(timedelta(seconds=2))

        # Act
        stream, html = _live(operator_client)

    # Assert
    assert stream.state == "connected" and not stream.stale and not stream.bad
    assert stream.last_event_age_seconds == 7
    assert stream.last_reconcile_age_seconds == 22
    row = _stream_row(html)
    assert "<strong>connected</strong>" in row and "dashboard-bad" not in row
    assert "7 s ago" in row and "(12 events)" in row
    assert "42 ms" in row
    assert "22 s ago" in row and "(3 in all)" in row
    assert "STALE" not in row


def test_dashboard_when_stream_silent_longer_than_sentinel_limit_then_down_and_stale(
    operator_client: Client,
) -> None:
    # Arrange: connected, then the process stopped reporting (killed, or hung).
    with time_machine.travel(timezone.now(), tick=False) as clock:
        stream_state_report(connected=True, last_event_at=timezone.now(), lag_ms=5, events=1)
        clock.shift(STREAM_DOWN_AFTER - timedelta(seconds=1))
        still_up, _ = _live(operator_client)

        # Act
        clock.shift(timedelta(seconds=2))
        stream, html = _live(operator_client)

    # Assert: the same limit as the sentinel's alert, not a copy of it.
    assert still_up.state == "connected" and not still_up.stale
    assert stream.state == "down" and stream.stale and stream.bad
    assert stream.report_age_seconds == int(STREAM_DOWN_AFTER.total_seconds()) + 1
    row = _stream_row(html)
    assert "dashboard-bad" in row and "<strong>down</strong>" in row
    assert "STALE" in row and "is the stream process running?" in row


def test_dashboard_when_stream_disconnected_then_reconnecting_until_the_limit_then_down(
    operator_client: Client,
) -> None:
    with time_machine.travel(timezone.now(), tick=False) as clock:
        stream_state_report(connected=True)
        stream_state_report(connected=False, error="user data stream lost: closed")
        clock.shift(timedelta(seconds=20))
        # The process keeps reporting while it retries with backoff.
        stream_state_report(connected=False, error="user data stream lost: refused")
        retrying, retrying_html = _live(operator_client)

        clock.shift(STREAM_DOWN_AFTER)
        stream_state_report(connected=False, error="user data stream lost: refused")
        stream, html = _live(operator_client)

    assert retrying.state == "reconnecting" and not retrying.bad
    assert "<strong>reconnecting</strong>: user data stream lost: refused" in _stream_row(
        retrying_html
    )
    assert stream.state == "down" and stream.bad and not stream.stale
    assert "dashboard-bad" in _stream_row(html)


def test_dashboard_when_stream_stopped_then_down_at_once(operator_client: Client) -> None:
    stream_state_report(connected=True)
    stream_state_report(connected=False, error=STOPPED)

    stream, html = _live(operator_client)

    assert stream.state == "down" and stream.bad
    assert f"<strong>down</strong>: {STOPPED}" in _stream_row(html)


def test_dashboard_when_stream_never_ran_then_never_ran(operator_client: Client) -> None:
    assert not StreamState.objects.exists()

    stream, html = _live(operator_client)
    page = operator_client.get(reverse("dashboard")).content.decode()

    assert stream.state == "never ran" and not stream.bad
    for shown in (html, page):
        row = _stream_row(shown)
        assert "<strong>never ran</strong>" in row and "none yet" in row


def test_stream_state_admin_when_superuser_edits_then_refused(operator_client: Client) -> None:
    # Arrange
    stream_state_report(connected=True, events=4)
    state = StreamState.objects.get()
    change_url = reverse("admin:trading_streamstate_change", args=[state.pk])

    # Act
    changelist = operator_client.get(reverse("admin:trading_streamstate_changelist"))
    view = operator_client.get(change_url)
    add = operator_client.get(reverse("admin:trading_streamstate_add"))
    change = operator_client.post(
        change_url, {"name": state.name, "connected": "", "events": "0", "error": "by hand"}
    )
    delete = operator_client.post(
        reverse("admin:trading_streamstate_delete", args=[state.pk]), {"post": "yes"}
    )

    # Assert: visible, never edited, added or deleted by hand.
    assert changelist.status_code == 200 and state.name in changelist.content.decode()
    assert view.status_code == 200
    assert 'type="submit"' not in view.content.decode().split('id="content-main"')[1]
    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    state.refresh_from_db()
    assert state.connected and state.events == 4 and state.error == ""
