"""The order path: how a decision becomes a protected position, and how it closes.

One module per subject (entry, protection, exit, orders, PnL, events); this package re-exports
what callers use, so they import ``trading.services`` and need not know which module holds what.
"""

from __future__ import (
    annotations,
)

from trading.services.entry import (  # noqa: F401
    ENTRY_SIDE,
    _entry_intent_create,
    position_entry_resolve,
    position_open,
)
from trading.services.exit import (  # noqa: F401
    CLOSE_LOCK_WAIT_SECONDS,
    CLOSE_RESTORED,
    exchange_position_flatten,
    position_close,
    position_record_exchange_close,
)
from trading.services.orders import (  # noqa: F401
    CLIENT_ID_PREFIX,
    EXIT_SIDE,
    client_order_id_for,
    order_refresh,
)
from trading.services.outcomes import (  # noqa: F401
    CloseOutcome,
    OpenOutcome,
)
from trading.services.protection import (  # noqa: F401
    ExitInFlight,
    exit_client_order_id,
    exit_order_place,
    exit_order_send,
    position_replace_stop,
)
