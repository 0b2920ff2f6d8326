"""Fixtures of the order-path tests. The world (``scenario_market``, ``recording_gateway``,
``btc``, ``bnb``, ``sleeps``) is in ``tests.support.plugins.markets``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.exchange import no_precision_rejections


@pytest.fixture(autouse=True)
def _no_precision_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that talks to the paper exchange ends with zero -1111 rejections there."""
    yield from no_precision_rejections(request)
