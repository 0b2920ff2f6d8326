from __future__ import annotations

from django.apps import AppConfig


class PaperConfig(AppConfig):
    """The paper exchange as a Django app, so ``manage.py paper_exchange`` is found."""

    name = "paper"
    verbose_name = "Paper exchange"
    default_auto_field = "django.db.models.BigAutoField"
