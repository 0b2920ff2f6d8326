"""The web process refuses to start on a build whose static files were not collected."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core.files.storage import storages


def static_manifest_problem() -> str | None:
    """Why the admin's static files cannot be served, or ``None`` when they can.

    With ``DEBUG`` off the storage names every static file after its hash, from the manifest
    ``collectstatic`` writes; without it every admin page fails with a 500. Said at start,
    where the operator looks, instead of on each page.
    """
    storage = storages["staticfiles"]
    if not isinstance(storage, ManifestFilesMixin):
        return None
    manifest = Path(settings.STATIC_ROOT) / storage.manifest_name
    if manifest.is_file():
        return None
    return (
        f"Static files are not collected: {manifest} is missing. Run "
        "`python manage.py collectstatic --no-input` in the build (Heroku's Python build does "
        "it), then start again."
    )
