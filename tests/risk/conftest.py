"""The risk tests use the order-path world (``scenario_market``, ``recording_gateway``, ``btc``,
``bnb``; see ``tests.support.plugins.markets``) and its watch on -1111 rejections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.exchange import no_precision_rejections


@pytest.fixture(autouse=True)
def _no_precision_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that talks to the paper exchange ends with zero -1111 rejections there."""
    yield from no_precision_rejections(request)
