"""Session login for the admin and browser pages, CSRF on unsafe requests, and failed logins in the audit log."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from aihub.access.models import ApiToken, AuditEvent, Membership
from tests.factories import PASSWORD, ApiTokenFactory, UserFactory
from tests.helpers import FORM, assert_problem, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_membership(membership: Membership) -> Membership:
    get_user_model().objects.filter(pk=membership.user.pk).update(is_staff=True)
    membership.user.refresh_from_db()
    return membership


def sign_in_through_the_admin(browser: Client, username: str, password: str = PASSWORD) -> Any:
    """What a person does: open the login page (which sets the CSRF cookie), then post the form."""
    page = browser.get("/admin/login/")
    assert page.status_code == 200
    form = {
        "username": username,
        "password": password,
        "next": "/admin/",
        "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
    }
    return browser.post("/admin/login/", urlencode(form), content_type=FORM)


# --- Session login ---------------------------------------------------------------------------------------


def test_a_logged_in_session_can_get_me(membership: Membership) -> None:
    browser = APIClient()
    assert browser.login(username=membership.user.username, password=PASSWORD)

    me = browser.get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == membership.user.username
    assert me.json()["credential"] == {"method": "session", "scopes": None, "token_tenant": None}


def test_signing_in_through_the_admin_form_opens_the_api(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)

    signed_in = sign_in_through_the_admin(browser, staff_membership.user.username)

    assert signed_in.status_code == 302, signed_in.content
    assert signed_in["Location"] == "/admin/"
    me = browser.get("/api/v1/me")
    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == staff_membership.user.username
    assert browser.get(f"/api/v1/{staff_membership.tenant.slug}/roles/").status_code == 200


def test_an_anonymous_request_is_a_401_problem(db: None) -> None:
    response = APIClient().get("/api/v1/me")

    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unsafe_request_with_the_session_but_without_a_csrf_token_is_refused(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    sign_in_through_the_admin(browser, staff_membership.user.username)

    response = browser.post("/api/v1/tokens/", {"name": "forged"})

    body = assert_problem(response, 403)
    assert "CSRF" in body["detail"]
    assert not ApiToken.objects.filter(name="forged").exists()


def test_an_unsafe_request_with_a_wrong_csrf_token_is_refused(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    sign_in_through_the_admin(browser, staff_membership.user.username)

    response = browser.post("/api/v1/tokens/", {"name": "forged"}, HTTP_X_CSRFTOKEN="x" * 64)

    assert_problem(response, 403)
    assert not ApiToken.objects.filter(name="forged").exists()


def test_an_unsafe_request_with_the_session_and_its_csrf_token_succeeds(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    sign_in_through_the_admin(browser, staff_membership.user.username)
    # Login rotates the CSRF token; the page script reads the current one from the cookie.
    csrf_token = browser.cookies["csrftoken"].value

    response = browser.post("/api/v1/tokens/", {"name": "from the browser"}, HTTP_X_CSRFTOKEN=csrf_token)

    assert response.status_code == 201, response.content
    assert ApiToken.objects.get(name="from the browser").user == staff_membership.user


def test_safe_requests_with_the_session_need_no_csrf_token(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    sign_in_through_the_admin(browser, staff_membership.user.username)

    assert browser.get("/api/v1/tokens/").status_code == 200


def test_a_bearer_token_needs_no_csrf_token(membership: Membership) -> None:
    # CSRF protects cookies that the browser adds on its own; a bearer header it never adds by itself.
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiTokenFactory.create(user=membership.user).raw}")

    assert client.post("/api/v1/tokens/", {"name": "scripted"}).status_code == 201


def test_logging_out_ends_the_api_session(staff_membership: Membership) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    sign_in_through_the_admin(browser, staff_membership.user.username)

    form = {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value}
    assert browser.post("/admin/logout/", urlencode(form), content_type=FORM).status_code == 200

    assert_problem(browser.get("/api/v1/me"), 401)


# --- Failed logins in the audit log ----------------------------------------------------------------------


def test_a_failed_admin_login_is_audited_without_the_password(staff_membership: Membership) -> None:
    browser = Client(enforce_csrf_checks=True)

    response = sign_in_through_the_admin(browser, staff_membership.user.username, password="Tr0ub4dor&3-wrong")

    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in browser.session
    event = AuditEvent.objects.get(action="login.failed")
    assert event.details == {"username": staff_membership.user.username}
    assert event.ip_address == "127.0.0.1"
    assert event.request_id
    assert "Tr0ub4dor" not in json.dumps(AuditEvent.objects.filter(pk=event.pk).values().get(), default=str)


def test_a_failed_login_of_an_unknown_user_is_audited(db: None) -> None:
    sign_in_through_the_admin(Client(), "nobody-by-this-name", password="whatever-it-is")

    assert AuditEvent.objects.get(action="login.failed").details == {"username": "nobody-by-this-name"}


def test_a_successful_login_is_not_a_failure(staff_membership: Membership) -> None:
    sign_in_through_the_admin(Client(), staff_membership.user.username)

    assert not AuditEvent.objects.filter(action="login.failed").exists()


@pytest.mark.parametrize(
    "secret",
    [
        "A" * 43,  # a well-formed token with the wrong secret
        "wrongSECRETwithDashes-and_underscores_inside",
    ],
)
def test_a_failed_token_authentication_is_audited_without_the_secret(membership: Membership, secret: str) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    client = bearer(f"aih_{token.public_id}_{secret}")

    response = client.get("/api/v1/me")

    assert_problem(response, 401)
    event = AuditEvent.objects.get(action="auth.failed")
    assert event.details["method"] == "api_token"
    assert event.request_id == response["X-Request-ID"]
    stored = json.dumps(AuditEvent.objects.filter(pk=event.pk).values().get(), default=str)
    assert token.public_id in stored  # enough to tell which token was tried
    assert secret not in stored
    assert secret[:6] not in stored


@pytest.mark.parametrize(
    "raw",
    [
        "aih_SECRETSECRETSECRETSECRET",  # no public id at all: everything after the prefix may be secret
        "aih_ab_SECRETSECRETSECRET",  # a short public id followed by the secret
        "aih_" + "S" * 200,
    ],
)
def test_a_malformed_token_is_audited_without_any_of_its_secret(db: None, raw: str) -> None:
    client = bearer(raw)

    assert_problem(client.get("/api/v1/me"), 401)

    stored = json.dumps(AuditEvent.objects.filter(action="auth.failed").values().get(), default=str)
    assert "SECRET" not in stored
    assert "SSSS" not in stored


def test_failed_token_attempts_name_the_token_that_was_tried(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=UserFactory.create())
    client = bearer(f"aih_{token.public_id}_{'B' * 43}")

    client.get("/api/v1/me")

    event = AuditEvent.objects.get(action="auth.failed")
    assert event.actor is None  # nobody was authenticated
    assert event.details["prefix"] == token.display_prefix
