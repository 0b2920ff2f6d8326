"""Fixtures used by more than one test directory, registered once by ``tests/conftest.py``."""
