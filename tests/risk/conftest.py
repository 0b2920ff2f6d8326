"""The risk tests use the order-path fixtures (paper exchange, gateway, scenario market)."""

from tests.trading.conftest import (  # noqa: F401 - fixtures are found by name
    _no_precision_rejections,
    bnb,
    btc,
    exchange_exits,
    exchange_quantity,
    expect_precision_rejection,
    gateway,
    market,
    sleeps,
)
