"""Assemble and run the paper exchange: engine, market, feed, HTTP server and state file."""

from __future__ import annotations

import logging
import os
import threading
from decimal import Decimal
from pathlib import Path

from paper import candles as candle_data
from paper.engine import Engine
from paper.feed import ReplayFeed, StaticFeed
from paper.market import Market
from paper.options import Options
from paper.server import DEFAULT_API_KEY, DEFAULT_API_SECRET, PaperApp, PaperHTTPServer
from paper.state import StateFile
from paper.stream import UserStreamServer

logger = logging.getLogger(__name__)


def api_credentials() -> tuple[str, str]:
    """The key pair from ``PAPER_API_KEY`` / ``PAPER_API_SECRET``, with arena's defaults."""
    return (
        os.environ.get("PAPER_API_KEY", DEFAULT_API_KEY),
        os.environ.get("PAPER_API_SECRET", DEFAULT_API_SECRET),
    )


class PaperExchange:
    """One running paper exchange. Build it, :meth:`start` it, :meth:`stop` it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8700,
        feed: str = "static",
        speed: float = 1.0,
        state_file: Path | str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        prices: dict[str, str | Decimal] | None = None,
        candle_dir: Path | None = None,
        warmup: int = 500,
        stream_port: int | None = None,
        options: Options | None = None,
    ) -> None:
        if feed not in ("static", "replay"):
            raise ValueError(f"feed must be 'static' or 'replay', not {feed!r}")
        env_key, env_secret = api_credentials()
        self.engine = Engine(
            prices={k: Decimal(str(v)) for k, v in (prices or {}).items()}, options=options
        )
        self.market = Market(self.engine)
        candles = candle_data.load_dir(candle_data.CANDLE_DIR if candle_dir is None else candle_dir)
        self.feed: StaticFeed | ReplayFeed
        if feed == "replay":
            self.feed = ReplayFeed(self.engine, self.market, candles, speed=speed, warmup=warmup)
        else:
            self.feed = StaticFeed(self.engine, self.market, candles)
        self.state = StateFile(Path(state_file), self.engine) if state_file else None
        self.app = PaperApp(
            self.engine,
            self.market,
            api_key=api_key or env_key,
            api_secret=api_secret or env_secret,
            on_mutation=self.state.mark_dirty if self.state else None,
        )
        self.httpd = PaperHTTPServer((host, port), self.app)
        # The user data stream listens on its own port (``stream_port``; 0 picks a free one,
        # None: the HTTP port + 1), in this process.
        self.stream_server = UserStreamServer(
            self.app.user_stream,
            host=host,
            port=self.httpd.server_address[1] + 1 if stream_port is None else stream_port,
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.httpd.url

    @property
    def stream_url(self) -> str:
        """The user data stream's base URL (``ws://host:port/ws``)."""
        return self.stream_server.url

    def start(self) -> PaperExchange:
        """Start feed, state saving and the HTTP server (in a background thread)."""
        try:
            restored = self.state.restore() if self.state else False
        except Exception:
            self.httpd.server_close()
            raise
        if isinstance(self.feed, ReplayFeed) and restored:
            # Prices from the file would be overwritten by the replay's first candle.
            logger.info("replay feed: restored prices are replaced by the replay")
        self.feed.start()
        if self.state:
            self.state.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="paper-http", daemon=True
        )
        self._thread.start()
        self.stream_server.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop the feed, write the state one last time."""
        self.app.stopping.set()
        self.stream_server.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.feed.stop()
        if self.state:
            self.state.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
