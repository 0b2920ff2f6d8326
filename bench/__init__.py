"""Benchmarks of the guard, the entry path and a replay against the paper exchange.

Run with ``python -m bench`` (``make bench``); not part of the test suite.
"""
