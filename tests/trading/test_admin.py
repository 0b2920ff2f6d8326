"""The order path's records are visible in the admin, and read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(defaults: None) -> Client:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", ["position", "order", "exchangerequest", "tradeevent", "statuschange"]
)
def test_admin_when_listing_records_then_shown_without_add_button(
    admin_client_logged_in: Client, model: str
) -> None:
    response = admin_client_logged_in.get(f"/admin/trading/{model}/")
    add = admin_client_logged_in.get(f"/admin/trading/{model}/add/")

    assert response.status_code == 200
    assert add.status_code == 403
