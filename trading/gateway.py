"""The bot's gateway to the exchange: configured from the environment, every request recorded
in the database, one backoff shared by every worker of every process."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from core.db import db_write_lock
from core.errors import ExchangeError, OperatorActionRequired
from exchange.client import create_ccxt_client
from exchange.gateway import EPOCH, ExchangeGateway
from exchange.retry import RetryPolicy
from trading.models import ExchangeRequest

logger = logging.getLogger(__name__)


def exchange_gateway(*, retry_policy: RetryPolicy | None = None) -> ExchangeGateway:
    """Return the gateway configured by the environment (EXCHANGE=paper|binance).

    Keys come from settings (read from the environment) and go to ccxt only: never logged,
    never stored.
    """
    timeout_ms = int(float(settings.EXCHANGE_TIMEOUT_SECONDS) * 1000)
    if settings.EXCHANGE == "binance":
        if not settings.BINANCE_API_KEY or not settings.BINANCE_API_SECRET:
            raise OperatorActionRequired(
                "EXCHANGE=binance needs BINANCE_API_KEY and BINANCE_API_SECRET in the environment."
            )
        key, secret = settings.BINANCE_API_KEY, settings.BINANCE_API_SECRET
        base_url, demo = None, bool(settings.BINANCE_DEMO)
    else:
        key, secret = settings.PAPER_API_KEY, settings.PAPER_API_SECRET
        base_url, demo = settings.PAPER_EXCHANGE_URL, False

    def factory():  # a ccxt client: only the exchange package names ccxt
        return create_ccxt_client(
            api_key=key, api_secret=secret, base_url=base_url, demo=demo, timeout_ms=timeout_ms
        )

    return ExchangeGateway(
        client_factory=factory,
        retry_policy=retry_policy,
        request_log=DatabaseRequestLog(),
        weight_budget_1m=int(settings.EXCHANGE_WEIGHT_BUDGET_1M),
    )


def exchange_backoff_until() -> datetime | None:
    """When the wait the exchange asked for (429/418 Retry-After, recorded by whichever process
    got it) ends; None when there is none. The one backoff: the gateway refuses to send before
    then, and the guard skips its pass."""
    until = DatabaseRequestLog().backoff_until()
    return until if until > timezone.now() else None


class DatabaseRequestLog:
    """One ``ExchangeRequest`` row per request; the latest unexpired ``retry_until`` is the wait
    every worker honours. A failing request log never stops trading."""

    def record(
        self,
        *,
        action: str,
        symbol: str,
        client_order_id: str,
        latency_ms: int,
        error: ExchangeError | None,
        retry_until: datetime | None,
    ) -> None:
        try:
            with db_write_lock:
                ExchangeRequest.objects.create(
                    action=action[:64],
                    symbol=symbol[:32],
                    client_order_id=client_order_id[:36],
                    latency_ms=latency_ms,
                    ok=error is None,
                    error_code=None if error is None else error.code,
                    error_message="" if error is None else str(error)[:255],
                    retry_until=retry_until,
                )
        except DatabaseError:
            logger.exception("could not record exchange request %s", action)

    def backoff_until(self) -> datetime:
        try:
            latest = (
                ExchangeRequest.objects.filter(retry_until__gt=timezone.now())
                .order_by("-retry_until")
                .values_list("retry_until", flat=True)
                .first()
            )
        except DatabaseError:
            logger.exception("could not read the exchange's backoff from the request log")
            return EPOCH
        return latest or EPOCH

    def backoff_lift(self) -> None:
        try:
            with db_write_lock:
                ExchangeRequest.objects.filter(retry_until__gt=timezone.now()).update(
                    retry_until=None
                )
        except DatabaseError:
            logger.exception("could not lift the exchange's backoff in the request log")
