"""Fixtures shared by every test: the default rules, and the paper exchange over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management import call_command

# The shared helpers assert too: pytest explains their failures as it does a test's.
pytest.register_assert_rewrite("tests.support")

# Fixtures more than one directory uses; pytest accepts pytest_plugins only in this, the root
# conftest, so no conftest needs to import another.
pytest_plugins = [
    "tests.support.plugins.celery_tasks",
    "tests.support.plugins.markets",
    "tests.support.plugins.telegram",
    "tests.support.plugins.worker",
]


def _database_is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    skip_redis = pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://...")
    for item in items:
        if "postgres" in item.keywords and not _database_is_postgres():
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not os.environ.get("REDIS_URL"):
            item.add_marker(skip_redis)


@pytest.fixture
def defaults(db: None) -> None:
    """The shipped default rules (fixtures/defaults.json)."""
    call_command("loaddata", "defaults", verbosity=0)


@pytest.fixture(scope="session")
def paper_server() -> Iterator[object]:
    """One in-process paper exchange for the session, on a free port, static prices."""
    from paper.testing import PaperExchangeServer

    server = PaperExchangeServer()
    server.start(port=0, feed="static")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def paper(paper_server: object, settings: object) -> Iterator[object]:
    """The paper exchange reset for this test, and the settings pointed at it."""
    from paper.testing import PaperControl

    control = PaperControl(paper_server.url)
    control.reset()
    control.clear_faults()
    settings.EXCHANGE = "paper"
    settings.PAPER_EXCHANGE_URL = paper_server.url
    yield control
