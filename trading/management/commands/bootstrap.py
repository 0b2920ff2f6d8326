"""Prepare a fresh local installation: default rules once, and a development admin login."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from trading.models import Symbol


class Command(BaseCommand):
    help = (
        "Load the default rules when the database has none (never overwrites edits) and, "
        "with DEBUG on, create a local admin login and print it once."
    )

    def handle(self, *args, **options) -> None:
        if Symbol.objects.exists():
            self.stdout.write("Rules already present: defaults not reloaded.")
        else:
            call_command("loaddata", "defaults", verbosity=0)
            self.stdout.write("Default rules loaded (BTCUSDT and BNBUSDT enabled, 2x, 30 %).")
        self._ensure_development_admin()

    def _ensure_development_admin(self) -> None:
        user_model = get_user_model()
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no development admin created.")
            return
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(
            self.style.WARNING(
                "Development admin created (shown once): http://127.0.0.1:8000/admin/ "
                f"user admin / password {password}"
            )
        )
