"""The stream's state as the dashboard and the sentinel read it: connected, last event, lag;
an alert when it has been down for longer than a minute."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from monitoring.models import Alert
from monitoring.sentinel import sentinel_pass
from tests.support.factories import open_long
from tests.support.stream import closed, wait_for
from trading.locks import db_write_lock
from trading.models import StreamState
from trading.stream import stream_state_report

pytestmark = pytest.mark.django_db(transaction=True)


def _stream_alerts() -> list[Alert]:
    return list(Alert.objects.filter(key="sentinel.stream_down"))


def test_stream_when_running_and_a_fill_arrives_then_state_shows_connected_last_event_and_lag(
    btc_market, btc, unthrottled_gateway, start_stream
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    running = start_stream(report_seconds=0.05)

    # Act
    btc_market.set_price("BTCUSDT", "99700")
    wait_for(lambda: closed(position), 2.0, "the close")

    def reported() -> bool:
        with db_write_lock:
            state = StreamState.objects.first()
        return state is not None and state.events >= 1

    wait_for(reported, 2.0, "the state to show the event")

    # Assert
    state = StreamState.objects.get()
    assert state.connected
    assert state.last_event_at is not None and state.lag_ms is not None
    assert 0 <= state.lag_ms < 1000
    assert state.reconciles >= 1
    assert state.last_reconcile_at is not None
    running.stop()
    state.refresh_from_db()
    assert not state.connected and state.error == "stopped"


def test_sentinel_when_stream_down_for_90_s_then_stream_down_alert(paper, defaults):
    # Arrange: the stream went down at t0.
    with time_machine.travel(timezone.now(), tick=False) as clock:
        stream_state_report(connected=False, error="user data stream lost: closed")

        # Act
        clock.shift(timedelta(seconds=90))
        sentinel_pass()

    # Assert
    alerts = _stream_alerts()
    assert len(alerts) == 1
    assert "down for 90 s" in alerts[0].message
    assert "user data stream lost" in alerts[0].message


def test_sentinel_when_stream_down_for_30_s_then_no_alert(paper, defaults):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        stream_state_report(connected=False, error="reconnecting")
        clock.shift(timedelta(seconds=30))
        sentinel_pass()

    assert _stream_alerts() == []


def test_sentinel_when_stream_process_silent_for_2_min_then_stream_down_alert(paper, defaults):
    # Arrange: connected at its last report, then nothing (the process died).
    with time_machine.travel(timezone.now(), tick=False) as clock:
        stream_state_report(connected=True)

        # Act
        clock.shift(timedelta(minutes=2))
        sentinel_pass()

    # Assert
    assert len(_stream_alerts()) == 1


def test_sentinel_when_stream_never_ran_then_no_stream_alert(paper, defaults):
    sentinel_pass()

    assert _stream_alerts() == []
