"""The guard tests' world is shared with the stream tests: ``btc_market``, ``btc``,
``unthrottled_gateway`` and ``guard`` are in ``tests.support.plugins.markets``; positions are
opened with ``tests.support.factories``."""
