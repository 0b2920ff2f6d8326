"""A process holding one symbol's lock, as a slow trade cycle does (slow klines, an LLM call):
``python -m tests.guard.holder SYMBOL SECONDS``. Prints ``holding`` once it has the lock."""

from __future__ import annotations

import os
import sys
import time


def main(symbol: str, seconds: float) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.test")
    import django

    django.setup()
    from trading.locks import symbol_lock
    from trading.models import Symbol

    with symbol_lock(Symbol.objects.get(name=symbol).pk, ttl=seconds + 60):
        print("holding", flush=True)
        time.sleep(seconds)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
