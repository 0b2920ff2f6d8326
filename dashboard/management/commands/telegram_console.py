"""``python manage.py telegram_console``: answer the operator's commands in Telegram."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dashboard.console import POLL_SECONDS, Console, console_chat_ids, console_run
from monitoring.telegram import telegram_config


class Command(BaseCommand):
    help = (
        "Long-poll Telegram for commands from the allowed chats (TELEGRAM_CONSOLE_CHAT_IDS, "
        "else TELEGRAM_CHAT_ID) and answer them. Without TELEGRAM_BOT_TOKEN it waits idle."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one poll, then exit")
        parser.add_argument("--poll-seconds", type=int, default=POLL_SECONDS)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        config = telegram_config()
        chats = console_chat_ids()
        if not config.token or not chats:
            self.stdout.write(
                "Telegram console idle: set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID "
                "(or TELEGRAM_CONSOLE_CHAT_IDS) to use it."
            )
            if not options["once"]:
                stop.wait()
            return
        self.stdout.write(f"Telegram console answering {len(chats)} chat(s); Ctrl-C stops.")
        handled = console_run(
            console=Console(allowed_chat_ids=chats),
            config=config,
            stop=stop,
            poll_seconds=options["poll_seconds"],
            rounds=1 if options["once"] else None,
        )
        self.stdout.write(f"Telegram console stopped ({handled} message(s) answered).")
