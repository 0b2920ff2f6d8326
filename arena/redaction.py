"""Secrets inside URLs kept out of error reports and log lines.

Django hides settings by name (``SECRET_KEY``, ``DATABASES['default']['PASSWORD']``), but a
password inside a URL travels under innocent names: ``REDIS_URL``, ``CELERY_BROKER_URL``, the
environment a development server copies into ``request.META``, an exception's message, a local
variable in a traceback. Every ``scheme://user:password@host`` anywhere in a report or a log
line is shown as ``scheme://user:********@host``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

REDACTED = "********"

# scheme://[user]:password@ — the password runs to the last "@" before a "/" or a space, so an
# unescaped "@" inside it is hidden too. Quote characters end it, so the URL inside a repr such as
# "'redis://:pw@host'" or an HTML-escaped page ("&#x27;") is matched the same way.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"<>]*:)(?P<password>[^\s/'\"<>]*)@",
    re.IGNORECASE,
)


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``********``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['prefix']}{REDACTED}@", text)


def _redact_if_text(value: Any) -> Any:
    # type(), not isinstance(): lazy objects pass isinstance(str) without being text yet.
    return redact_urls(value) if issubclass(type(value), str) else value


class UrlSecretsReporterFilter(SafeExceptionReporterFilter):
    """Django's name-based filter, plus URL passwords in any setting, META entry or cookie."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return _redact_if_text(cleansed)

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, _redact_if_text(value)) for name, value in variables]


class UrlSecretsExceptionReporter(ExceptionReporter):
    """The technical error page and error e-mails, with every URL password redacted.

    Redacting the rendered report also covers what the filter never sees: the exception's
    message and the repr of objects that hold a URL.
    """

    def get_traceback_html(self) -> str:
        return redact_urls(super().get_traceback_html())

    def get_traceback_text(self) -> str:
        return redact_urls(super().get_traceback_text())


class UrlSecretsFormatter(logging.Formatter):
    """Log lines (message, arguments and traceback) with every URL password redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))
