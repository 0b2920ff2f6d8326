"""The bot's exceptions. Each docstring says what the bot does when it is raised.

Exchange errors are classified by Binance's error code (not by ccxt's exception class), so the
paper exchange and Binance behave alike.
"""

from __future__ import annotations


class ArenaError(Exception):
    """Base of every error the bot raises on purpose."""


class ExchangeError(ArenaError):
    """The exchange answered with an error. Carries Binance's code when there is one."""

    def __init__(self, message: str, *, code: int | None = None, action: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.action = action


class TemporaryError(ExchangeError):
    """Network error, timeout, 5xx or overload: retried with backoff within a bounded time."""


class RateLimited(TemporaryError):
    """HTTP 429/418 or -1003: the bot waits at least ``retry_after`` seconds, then retries."""

    def __init__(
        self, message: str, *, code: int | None = None, action: str = "", retry_after: float = 1.0
    ) -> None:
        super().__init__(message, code=code, action=action)
        self.retry_after = retry_after


class ClockSkew(TemporaryError):
    """-1021: the client clock is resynced with the exchange and the request retried once."""


class OrderRejected(ExchangeError):
    """The exchange refused an order for a reason that retrying cannot fix (precision, filters,
    margin, would-trigger, reduce-only). Never retried; recorded; the caller decides."""


class OrderNotFound(ExchangeError):
    """The order does not exist on the exchange (-2011/-2013). Nothing is retried."""


class AuthenticationFailed(ExchangeError):
    """Bad key, signature or permissions (-2014/-2015/-1022). Never retried; trading halts."""


class RiskDenied(ArenaError):
    """A pre-trade check refused the trade. The reason is stored and shown; nothing is sent."""


class OperatorActionRequired(ArenaError):
    """The account or rules need a person (hedge mode, multi-assets mode, no active risk
    profile). The bot refuses to trade until it is fixed."""


class IllegalTransition(Exception):
    """A status move that ``trading.transitions`` does not allow (e.g. CLOSED -> OPEN): a bug in
    the caller, or a row edited by hand. Nothing is written and nothing retries it. Deliberately
    not an ``ArenaError``, so no handler of exchange failures mistakes it for one."""
