"""The one retry policy for every exchange call.

Only ``TemporaryError`` is retried (network errors, timeouts, 5xx, -1003 and HTTP 429/418), with
exponential backoff and jitter, honouring Retry-After, inside a bounded total time. ``ClockSkew``
(-1021) resyncs the clock and is retried once. Everything else — precision (-1111), filters
(-1013/-4164), margin (-2019), would-trigger (-2021), reduce-only (-2022), authentication — is
raised on the first answer: retrying a request the exchange has judged cannot make it valid.

An order request whose answer was lost (timeout, dropped connection, 5xx) may have been accepted.
``call_with_retry`` takes a ``recover`` function for those: it looks the order up by its client
order id before anything is sent again, and its answer, when there is one, is the result.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from django.conf import settings

from core.errors import ArenaError, ClockSkew, ExchangeError, RateLimited, TemporaryError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a temporary error is retried. Inject ``sleep`` and ``clock`` in
    tests so nothing really waits."""

    max_total_seconds: float = 20.0
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 5.0
    jitter: float = 0.5  # a share of the delay, added at random so workers do not retry in step
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, *, attempt: int, error: TemporaryError) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        backoff = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        backoff += backoff * self.jitter * self.rng.random()
        if isinstance(error, RateLimited):
            # The exchange said how long; waiting less gets the IP banned (418).
            return max(backoff, error.retry_after)
        return backoff


def default_retry_policy() -> RetryPolicy:
    """The policy from settings (EXCHANGE_RETRY_MAX_SECONDS bounds the total time)."""
    return RetryPolicy(
        max_total_seconds=float(settings.EXCHANGE_RETRY_MAX_SECONDS),
    )


def is_ambiguous(error: TemporaryError) -> bool:
    """True when the exchange may have acted on the request although we got no answer.

    Rate limits and clock skew are refused before the exchange acts; a timeout, a dropped
    connection or a 5xx says nothing about whether an order was accepted.
    """
    return not isinstance(error, RateLimited | ClockSkew)


def exchange_may_have_acted(error: Exception) -> bool:
    """True when the request that raised ``error`` may have been carried out by the exchange.

    ``call_with_retry`` stamps its verdict on the error it gives up with (an ambiguous error on
    any attempt since the last lookup that found nothing makes the outcome unknown). Without the
    stamp the class decides: a request refused before it was sent (the local weight budget, a
    Retry-After still running), a rate limit, clock skew, a rejection or an authentication
    failure was not acted on; any other temporary error (timeout, dropped connection, 5xx) may
    have been.
    """
    stamped = getattr(error, "may_have_acted", None)
    if stamped is not None:
        return bool(stamped)
    if isinstance(error, TemporaryError):
        return is_ambiguous(error)
    if isinstance(error, ExchangeError):
        # An answer with a code the bot does not know is still an answer, but not a refusal.
        return type(error) is ExchangeError
    # Our own refusals (e.g. OperatorActionRequired) come before a request; anything else is
    # a bug mid-request, whose outcome nobody knows.
    return not isinstance(error, ArenaError)


def call_with_retry(
    send: Callable[[], T],
    *,
    policy: RetryPolicy,
    action: str,
    resync_clock: Callable[[], None] | None = None,
    recover: Callable[[], T | None] | None = None,
) -> T:
    """Call ``send`` under the policy and return its result.

    ``recover`` (order requests only) runs before any resend that follows an ambiguous error:
    it returns the order the exchange already has, or None when it has none, and only then is
    ``send`` called again. A temporary error inside ``recover`` is retried like any other.
    """
    started = policy.clock()
    attempt = 0
    resynced = False
    must_recover = False
    # An ambiguous error since the last lookup that found nothing: the exchange may have acted.
    unresolved = False
    while True:
        try:
            if must_recover and recover is not None:
                found = recover()
                must_recover = False
                unresolved = False
                if found is not None:
                    logger.info("%s: answer was lost, found on the exchange by client id", action)
                    return found
            return send()
        except ClockSkew as error:
            if resynced or resync_clock is None:
                error.may_have_acted = unresolved
                raise
            resynced = True
            logger.warning("%s: clock skew (-1021), resyncing with the exchange", action)
            resync_clock()
        except TemporaryError as error:
            attempt += 1
            if is_ambiguous(error):
                unresolved = True
                must_recover = recover is not None
            wait = policy.delay(attempt=attempt, error=error)
            elapsed = policy.clock() - started
            if elapsed + wait > policy.max_total_seconds:
                logger.warning(
                    "%s: giving up after %d attempts in %.1fs: %s", action, attempt, elapsed, error
                )
                error.may_have_acted = unresolved
                raise
            logger.info("%s: %s; retry %d in %.2fs", action, error, attempt, wait)
            policy.sleep(wait)
