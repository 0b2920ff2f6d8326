"""The one retry policy: what is retried, how long it waits, and what never is."""

from __future__ import annotations

import random

import ccxt
import pytest

from core.errors import (
    AuthenticationFailed,
    ClockSkew,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    TemporaryError,
)
from core.errors import ExchangeError as ArenaExchangeError
from exchange.gateway import translate_error
from exchange.retry import RetryPolicy, call_with_retry


class FakeClock:
    """A clock that advances only when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def policy(clock: FakeClock, total: float = 10.0) -> RetryPolicy:
    return RetryPolicy(
        max_total_seconds=total,
        base_delay_seconds=0.1,
        max_delay_seconds=1.0,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
    )


def failing(*errors: Exception, result: str = "ok"):
    calls: list[int] = []

    def send() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return send, calls


def test_call_when_temporary_errors_then_retried_with_growing_backoff() -> None:
    clock = FakeClock()
    send, calls = failing(TemporaryError("503"), TemporaryError("503"), TemporaryError("503"))

    result = call_with_retry(send, policy=policy(clock), action="t")

    assert result == "ok"
    assert len(calls) == 4
    assert clock.sleeps[0] < clock.sleeps[1] < clock.sleeps[2]


def test_call_when_rate_limited_then_waits_at_least_retry_after() -> None:
    clock = FakeClock()
    send, calls = failing(RateLimited("429", code=-1003, retry_after=7))

    call_with_retry(send, policy=policy(clock, total=30), action="t")

    assert len(calls) == 2
    assert clock.sleeps == [pytest.approx(7)]


def test_call_when_temporary_errors_outlast_the_budget_then_raises() -> None:
    clock = FakeClock()
    send, calls = failing(*[TemporaryError("down")] * 100)

    with pytest.raises(TemporaryError):
        call_with_retry(send, policy=policy(clock, total=3), action="t")

    assert clock.now <= 3
    assert 3 < len(calls) < 100


@pytest.mark.parametrize(
    "error",
    [
        OrderRejected("precision", code=-1111),
        OrderRejected("filter", code=-1013),
        OrderRejected("notional", code=-4164),
        OrderRejected("margin", code=-2019),
        OrderRejected("would trigger", code=-2021),
        OrderRejected("reduce only", code=-2022),
        AuthenticationFailed("key", code=-2015),
        OrderNotFound("gone", code=-2013),
    ],
)
def test_call_when_permanent_error_then_raised_on_first_attempt(error: Exception) -> None:
    clock = FakeClock()
    send, calls = failing(error)

    with pytest.raises(type(error)):
        call_with_retry(send, policy=policy(clock), action="t")

    assert len(calls) == 1
    assert clock.sleeps == []


def test_call_when_clock_skew_then_resyncs_once_and_retries_once() -> None:
    clock = FakeClock()
    resyncs: list[int] = []
    send, calls = failing(ClockSkew("-1021", code=-1021), ClockSkew("-1021", code=-1021))

    with pytest.raises(ClockSkew):
        call_with_retry(
            send, policy=policy(clock), action="t", resync_clock=lambda: resyncs.append(1)
        )

    assert resyncs == [1]
    assert len(calls) == 2


def test_call_when_answer_lost_then_looks_up_before_resending() -> None:
    clock = FakeClock()
    send, calls = failing(TemporaryError("timeout"))
    lookups: list[int] = []

    def recover() -> str:
        lookups.append(1)
        return "found on the exchange"

    result = call_with_retry(send, policy=policy(clock), action="t", recover=recover)

    assert result == "found on the exchange"
    assert len(calls) == 1
    assert lookups == [1]


def test_call_when_rate_limited_then_resends_without_lookup() -> None:
    clock = FakeClock()
    send, calls = failing(RateLimited("429", code=-1003, retry_after=0))
    lookups: list[int] = []

    call_with_retry(send, policy=policy(clock), action="t", recover=lambda: lookups.append(1))

    assert len(calls) == 2
    assert lookups == []


# ------------------------------------------------------------------ error translation
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"code":-1111,"msg":"Precision is over the maximum defined for this asset."}',
            OrderRejected,
        ),
        ('{"code":-4164,"msg":"Order\'s notional must be no smaller than 5"}', OrderRejected),
        ('{"code":-2019,"msg":"Margin is insufficient."}', OrderRejected),
        (
            '{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}',
            ClockSkew,
        ),
        (
            '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
            AuthenticationFailed,
        ),
        ('{"code":-2013,"msg":"Order does not exist."}', OrderNotFound),
        ('{"code":-1001,"msg":"Internal error"}', TemporaryError),
        ('{"code":-1003,"msg":"Too many requests"}', RateLimited),
    ],
)
def test_translate_when_bare_ccxt_exchange_error_then_classified_by_code(
    body: str, expected: type
) -> None:
    # Against a local URL ccxt raises a bare ExchangeError for most futures codes.
    error = ccxt.ExchangeError(f"binanceusdm {body}")

    translated = translate_error(error, action="create_market_order", status=400, body=body)

    assert type(translated) is expected


def test_translate_when_bad_request_subclass_then_never_temporary() -> None:
    # -1111 arrives from Binance's own host as BadRequest, a subclass of ExchangeError.
    body = '{"code":-1111,"msg":"Precision is over the maximum defined for this asset."}'

    translated = translate_error(
        ccxt.BadRequest(f"binanceusdm {body}"), action="create_market_order"
    )

    assert isinstance(translated, OrderRejected)
    assert not isinstance(translated, TemporaryError)
    assert translated.code == -1111


def test_translate_when_429_then_rate_limited_with_retry_after() -> None:
    translated = translate_error(
        ccxt.DDoSProtection("binanceusdm 429 Too Many Requests"),
        action="fetch_balance",
        status=429,
        headers={"Retry-After": "12"},
        body='{"code":-1003,"msg":"Too many requests"}',
    )

    assert isinstance(translated, RateLimited)
    assert translated.retry_after == 12


@pytest.mark.parametrize(
    "error", [ccxt.RequestTimeout("t"), ccxt.NetworkError("reset"), ccxt.ExchangeNotAvailable("x")]
)
def test_translate_when_no_answer_then_temporary(error: Exception) -> None:
    assert isinstance(translate_error(error, action="fetch_balance"), TemporaryError)


def test_translate_when_503_without_code_then_temporary() -> None:
    translated = translate_error(
        ccxt.ExchangeNotAvailable("503"), action="fetch_balance", status=503, body="busy"
    )

    assert isinstance(translated, TemporaryError)


def test_translate_when_unknown_code_on_a_read_then_plain_exchange_error() -> None:
    translated = translate_error(
        ccxt.ExchangeError("x"), action="fetch_balance", status=400, body='{"code":-9999,"msg":"?"}'
    )

    assert type(translated) is ArenaExchangeError
    assert translated.code == -9999


# --- did the exchange act? ----------------------------------------------------------------------
def _give_up_after(errors: list[Exception], *, recover=None) -> Exception:
    """Run ``call_with_retry`` over ``errors`` (one per send) until it gives up; return the
    error it raised."""
    clock = FakeClock()
    queue = list(errors)

    def send() -> None:
        raise queue.pop(0) if len(queue) > 1 else queue[0]

    with pytest.raises(Exception) as raised:
        call_with_retry(
            send, policy=policy(clock, total=3.0), action="create_market_order", recover=recover
        )
    return raised.value


def test_may_have_acted_when_only_rate_limits_then_false() -> None:
    from exchange.retry import exchange_may_have_acted

    error = _give_up_after([RateLimited("429", retry_after=2.0)])

    assert isinstance(error, RateLimited)
    assert exchange_may_have_acted(error) is False


def test_may_have_acted_when_a_503_came_before_the_429_then_true() -> None:
    from exchange.retry import exchange_may_have_acted

    # The 503's request may have been accepted; the 429 after it says nothing about that one.
    error = _give_up_after([TemporaryError("503"), RateLimited("429", retry_after=5.0)])

    assert exchange_may_have_acted(error) is True


def test_may_have_acted_when_lookup_after_503_found_nothing_then_false() -> None:
    from exchange.retry import exchange_may_have_acted

    error = _give_up_after(
        [TemporaryError("503"), RateLimited("429", retry_after=5.0)], recover=lambda: None
    )

    assert isinstance(error, RateLimited)
    assert exchange_may_have_acted(error) is False


def test_may_have_acted_when_clock_skew_twice_then_false() -> None:
    from exchange.retry import exchange_may_have_acted

    clock = FakeClock()

    def send() -> None:
        raise ClockSkew("-1021", code=-1021)

    with pytest.raises(ClockSkew) as raised:
        call_with_retry(send, policy=policy(clock), action="x", resync_clock=lambda: None)

    assert exchange_may_have_acted(raised.value) is False


def test_may_have_acted_when_503s_outlast_the_budget_then_true() -> None:
    from exchange.retry import exchange_may_have_acted

    error = _give_up_after([TemporaryError("503")], recover=lambda: None)

    assert exchange_may_have_acted(error) is True


@pytest.mark.django_db
def test_may_have_acted_when_refused_by_local_weight_budget_then_false_and_nothing_sent(
    paper, settings
) -> None:
    from decimal import Decimal

    from exchange.retry import exchange_may_have_acted
    from trading.gateway import exchange_gateway

    gateway = exchange_gateway()
    gateway.fetch_balance()  # one answered request: the gateway knows this minute's weight
    gateway.weight_budget_1m = 1  # as if built with EXCHANGE_WEIGHT_BUDGET_1M=1
    sent_before = sum(paper.stats()["requests"].values())

    with pytest.raises(RateLimited) as raised:
        gateway.create_market_order(
            symbol="BTCUSDT",
            side="BUY",
            quantity=Decimal("0.002"),
            client_order_id="budget-1",
            reduce_only=False,
        )

    assert exchange_may_have_acted(raised.value) is False
    assert sum(paper.stats()["requests"].values()) == sent_before
