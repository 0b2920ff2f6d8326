"""The monitoring tests' fixtures are shared: ``telegram`` (``tests.support.plugins.telegram``),
``celery_eager`` and ``celery_memory_broker`` (``tests.support.plugins.celery_tasks``)."""
