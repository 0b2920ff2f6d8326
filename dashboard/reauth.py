"""Re-authentication before the emergency actions: the password, entered in the last minutes.

A session cookie left open on a desk must not be enough to close every position. Logging in with
the password counts as entering it; after ``REAUTH_SECONDS`` the red buttons ask for it again.
The check goes through ``authenticate`` so every configured backend (and any throttling of
failed logins) applies to a wrong password here as to one on the login page.
"""

from __future__ import annotations

import time

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

REAUTH_SECONDS = 300
SESSION_KEY = "arena_password_entered_at"


def password_entered_recently(request: HttpRequest) -> bool:
    """True when this session's user entered their password in the last ``REAUTH_SECONDS``."""
    entered = request.session.get(SESSION_KEY)
    if not isinstance(entered, (int, float)):
        return False
    return 0 <= time.time() - entered <= REAUTH_SECONDS


def password_confirm(*, request: HttpRequest, password: str) -> bool:
    """Check the logged-in user's ``password``; on success the session is re-authenticated."""
    if not password:
        return False
    user = authenticate(request, username=request.user.get_username(), password=password)
    if user is None or user.pk != request.user.pk:
        return False
    request.session[SESSION_KEY] = time.time()
    return True


@receiver(user_logged_in)
def _password_entered_at_login(sender: object, request: HttpRequest | None, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = time.time()


def reauth_satisfied(request: HttpRequest) -> bool:
    """True when the password was entered recently, or is in this POST (field ``password``)."""
    return password_entered_recently(request) or password_confirm(
        request=request, password=request.POST.get("password", "")
    )


REAUTH_REFUSED = "Enter your password to confirm: it was not entered in the last few minutes."
