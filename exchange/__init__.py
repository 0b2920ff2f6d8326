"""The door to the exchange: the gateway over ccxt, Binance's codes and statuses parsed into our
own types, filters and rounding, retries with one backoff. It persists nothing: the request log
and the shared backoff are handed in by the caller (``trading.request_log``)."""
