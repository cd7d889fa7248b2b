"""The playground page: behind a session login, rendered with its script, and a login that leads back to it."""

from __future__ import annotations

import pytest
from django.test import Client

from aihub.access.models import Membership

pytestmark = pytest.mark.django_db


def test_an_anonymous_visitor_is_sent_to_the_playground_login() -> None:
    response = Client().get("/playground/")

    assert response.status_code == 302
    assert response["Location"] == "/playground/login/?next=/playground/"


def test_the_login_page_renders_a_form_with_a_csrf_token() -> None:
    response = Client().get("/playground/login/?next=/playground/")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in body
    assert 'name="username"' in body and 'name="password"' in body


def test_logging_in_leads_to_the_playground_with_its_script_and_a_csrf_cookie(membership: Membership) -> None:
    membership.user.set_password("s3cret-enough")
    membership.user.save()
    client = Client()

    response = client.post(
        "/playground/login/",
        {"username": membership.user.username, "password": "s3cret-enough", "next": "/playground/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/playground/"

    page = client.get("/playground/")
    assert page.status_code == 200
    assert "playground/playground.js" in page.content.decode()
    assert "csrftoken" in page.cookies


def test_a_wrong_password_shows_an_error_and_no_session(membership: Membership) -> None:
    client = Client()

    response = client.post("/playground/login/", {"username": membership.user.username, "password": "wrong"})

    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get("/playground/").status_code == 302


def test_the_api_accepts_the_playground_session_for_reads_and_demands_csrf_on_writes(membership: Membership) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(membership.user)
    client.get("/playground/")  # sets the CSRF cookie, as the page does for its script
    tenant = membership.tenant.slug

    assert client.get(f"/api/v1/{tenant}/threads/").status_code == 200
    refused = client.post(f"/api/v1/{tenant}/threads/", {"title": "x"}, content_type="application/json")
    assert refused.status_code == 403
    created = client.post(
        f"/api/v1/{tenant}/threads/",
        {"title": "From the playground"},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert created.status_code == 201, created.content


def test_logging_out_ends_the_session(membership: Membership) -> None:
    client = Client()
    client.force_login(membership.user)

    response = client.post("/playground/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/playground/login/"
    assert client.get("/playground/").status_code == 302
