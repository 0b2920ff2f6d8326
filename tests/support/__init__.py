"""What the tests share, so no test module imports from a conftest or from another test module.

Plain helpers live in modules by subject (``paper``, ``exchange``, ``factories``, ``logs``,
``stream``, ``celery_worker``, ``fakes``); fixtures used by more than one directory live in
``plugins``, registered once by ``tests/conftest.py`` through ``pytest_plugins``. Fixtures of one
world have names that say which: ``unthrottled_gateway`` (the guard's), ``recording_gateway``
(the order path's), ``patient_gateway`` (the fault tests'), ``btc_market``, ``scenario_market``,
``funded_market``.
"""
