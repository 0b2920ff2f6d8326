"""Production's security settings: a clean deploy check, HSTS and the proxy header by choice."""

from __future__ import annotations

import json

from tests.deploy.processes import PRODUCTION_SECRET_KEY, manage, production_env, python

ONLY_REQUIRED = {"SECRET_KEY": PRODUCTION_SECRET_KEY, "ALLOWED_HOSTS": "example.com"}

# A request as the router forwards it: the client spoke https to the router.
FORWARDED_HTTPS = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/admin/", HTTP_HOST="example.com", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps([response.status_code, response.get("Location"),
                  response.get("Strict-Transport-Security")]))
"""


def _forwarded_https(**env: str) -> tuple[int, str | None, str | None]:
    result = python(
        FORWARDED_HTTPS,
        production_env(DJANGO_SETTINGS_MODULE="arena.settings.production", **env),
    )
    assert result.returncode == 0, result.stderr
    status, location, hsts = json.loads(result.stdout.strip().splitlines()[-1])
    return status, location, hsts


def test_check_deploy_when_only_secret_key_and_allowed_hosts_set_then_no_issues() -> None:
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production_env(**ONLY_REQUIRED)
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_when_hsts_subdomains_and_preload_chosen_then_still_no_issues() -> None:
    env = production_env(
        **ONLY_REQUIRED,
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
    )

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stderr


def test_forwarded_proto_when_proxy_header_not_chosen_then_not_trusted_and_no_hsts() -> None:
    status, location, hsts = _forwarded_https(**ONLY_REQUIRED)

    # Anyone can send X-Forwarded-Proto: without the setting it is ignored and the plain http
    # request is sent to https, with no HSTS header (HSTS is only sent over https).
    assert (status, location, hsts) == (301, "https://example.com/admin/", None)


def test_forwarded_proto_when_proxy_header_chosen_then_https_and_hsts_as_chosen() -> None:
    status, _, hsts = _forwarded_https(**ONLY_REQUIRED, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert (status, hsts) == (302, "max-age=31536000")  # to the login page, over https

    status, _, hsts = _forwarded_https(
        **ONLY_REQUIRED,
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
    )
    assert (status, hsts) == (302, "max-age=31536000; includeSubDomains; preload")
