"""Database helpers every layer may use."""

from __future__ import annotations

import threading

# SQLite takes one writer at a time, and its shared-cache test database fails a second writer at
# once ("database table is locked") instead of waiting: threads of one process that write while
# another thread may be writing (the concurrent stop-loss and take-profit) queue here first.
db_write_lock = threading.RLock()
