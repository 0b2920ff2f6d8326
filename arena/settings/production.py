"""Production: DEBUG off unless the environment says otherwise; SECRET_KEY is required."""

import os

os.environ.setdefault("DEBUG", "0")

from arena.settings.base import *  # noqa: F403
