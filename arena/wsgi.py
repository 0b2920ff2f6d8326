"""WSGI entry point for gunicorn: production settings unless DJANGO_SETTINGS_MODULE says else."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.production")

application = get_wsgi_application()

# gunicorn runs no system checks: refuse to serve here rather than a 500 on every admin page.
from arena.static import static_manifest_problem  # noqa: E402 - needs the settings loaded

if problem := static_manifest_problem():
    raise ImproperlyConfigured(problem)
