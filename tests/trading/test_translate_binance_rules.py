"""The gateway's reading of the answers the paper exchange now gives as Binance does."""

from __future__ import annotations

import ccxt
import pytest

from core.errors import OrderRejected, TemporaryError
from exchange.gateway import (
    CLOSE_POSITION_EXIT_EXISTS,
    NOTHING_TO_CLOSE,
    REDUCE_ONLY_EXCEEDS_POSITION,
    translate_error,
)


@pytest.mark.parametrize(
    "code", [CLOSE_POSITION_EXIT_EXISTS, NOTHING_TO_CLOSE, REDUCE_ONLY_EXCEEDS_POSITION]
)
def test_translate_error_when_exit_rule_refuses_then_order_rejected_with_code(code: int) -> None:
    body = f'{{"code":{code},"msg":"refused"}}'

    error = translate_error(
        ccxt.ExchangeError(f"binanceusdm {body}"), action="create_exit_order", status=400, body=body
    )

    assert isinstance(error, OrderRejected)
    assert error.code == code


def test_translate_error_when_endpoint_unknown_then_not_retried_as_temporary() -> None:
    body = "<html><body><h2>404 Not found</h2></body></html>"

    error = translate_error(
        ccxt.ExchangeNotAvailable(f"binanceusdm GET 404 {body}"),
        action="create_exit_order",
        status=404,
        body=body,
    )

    assert not isinstance(error, TemporaryError)
    assert isinstance(error, OrderRejected)
