"""OAuth2 with django-oauth-toolkit at /o/: client credentials, authorization code + PKCE, scopes on every route."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from oauth2_provider.models import AbstractApplication, get_access_token_model, get_application_model
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from aihub.access.models import Membership, Role
from aihub.access.permissions import IsAuthenticatedWithScope
from tests.factories import ApiTokenFactory, MembershipFactory, UserFactory
from tests.helpers import FORM, assert_problem, bearer

pytestmark = pytest.mark.django_db

REDIRECT_URI = "https://app.example.com/callback"

Application = get_application_model()
AccessToken = get_access_token_model()


def basic(client_id: str, client_secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


@pytest.fixture
def service_app(admin_membership: Membership) -> tuple[Any, str]:
    """A confidential client-credentials application owned by a tenant admin, with its raw secret."""
    raw_secret = secrets.token_urlsafe(32)
    application = Application.objects.create(
        name="billing service",
        user=admin_membership.user,
        client_type=AbstractApplication.CLIENT_CONFIDENTIAL,
        authorization_grant_type=AbstractApplication.GRANT_CLIENT_CREDENTIALS,
        client_secret=raw_secret,  # hashed on save
    )
    return application, raw_secret


@pytest.fixture
def client_credentials(service_app: tuple[Any, str]) -> Callable[[str], str]:
    """``client_credentials("read write")``: an access token from /o/token/ with those scopes."""
    application, raw_secret = service_app

    def obtain(scope: str) -> str:
        response = Client().post(
            "/o/token/",
            urlencode({"grant_type": "client_credentials", "scope": scope}),
            content_type=FORM,
            HTTP_AUTHORIZATION=basic(application.client_id, raw_secret),
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == scope
        return str(body["access_token"])

    return obtain


@pytest.fixture
def browser_app(admin_membership: Membership) -> Any:
    """A public single-page app using the authorization code flow (PKCE instead of a secret)."""
    return Application.objects.create(
        name="web frontend",
        user=admin_membership.user,
        client_type=AbstractApplication.CLIENT_PUBLIC,
        authorization_grant_type=AbstractApplication.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
    )


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(application: Any, user: Any, *, scope: str = "read write") -> tuple[str, str]:
    """Sign ``user`` in, walk the consent page as they would with a fresh PKCE pair, and return the code from the
    redirect with the PKCE verifier that goes with it."""
    browser = Client()
    browser.force_login(user)
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "opaque-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    consent = browser.get("/o/authorize/", query)
    assert consent.status_code == 200, consent.content
    assert application.name in consent.content.decode()

    approved = browser.post("/o/authorize/", {**query, "allow": "Authorize"})

    assert approved.status_code == 302, approved.content
    location = urlsplit(approved["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    params = parse_qs(location.query)
    assert params["state"] == ["opaque-state"]
    return params["code"][0], verifier


def exchange(application: Any, code: str, verifier: str | None) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data["client_id"] = application.client_id
    if verifier is not None:
        data["code_verifier"] = verifier
    return Client().post("/o/token/", urlencode(data), content_type=FORM)


# --- Client credentials ----------------------------------------------------------------------------------


def test_a_client_credentials_token_acts_as_the_applications_owner(
    admin_membership: Membership, client_credentials: Callable[[str], str]
) -> None:
    me = bearer(client_credentials("read")).get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == admin_membership.user.username
    assert me.json()["credential"] == {"method": "oauth2", "scopes": ["read"], "token_tenant": None}
    assert [t["slug"] for t in me.json()["tenants"]] == [admin_membership.tenant.slug]


def test_a_client_credentials_token_reaches_the_owners_tenant_and_no_other(
    admin_membership: Membership, client_credentials: Callable[[str], str]
) -> None:
    client = bearer(client_credentials("read"))
    stranger = MembershipFactory.create()

    assert client.get(f"/api/v1/{admin_membership.tenant.slug}/roles/").status_code == 200
    assert client.get("/api/v1/active/roles/").status_code == 200
    assert_problem(client.get(f"/api/v1/{stranger.tenant.slug}/roles/"), 404)


def test_a_wrong_client_secret_gets_no_token(service_app: tuple[Any, str]) -> None:
    application, _secret = service_app

    response = Client().post(
        "/o/token/",
        urlencode({"grant_type": "client_credentials", "scope": "read"}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(application.client_id, "not-the-secret"),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_token_of_an_application_whose_owner_is_disabled_is_refused(
    admin_membership: Membership, client_credentials: Callable[[str], str]
) -> None:
    token = client_credentials("read")
    get_user_model().objects.filter(pk=admin_membership.user.pk).update(is_active=False)

    assert_problem(bearer(token).get("/api/v1/me"), 401)


# --- Authorization code + PKCE ---------------------------------------------------------------------------


def test_the_authorization_code_flow_with_pkce_gives_a_token_for_the_signed_in_user(
    browser_app: Any, admin_membership: Membership
) -> None:
    person = MembershipFactory.create(tenant=admin_membership.tenant, roles=["admin"]).user

    code, verifier = authorize(browser_app, person)
    token_response = exchange(browser_app, code, verifier)

    assert token_response.status_code == 200, token_response.content
    tokens = token_response.json()
    assert tokens["scope"] == "read write"
    assert tokens["refresh_token"]
    client = bearer(tokens["access_token"])
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.content
    # The user who consented, not the application's owner.
    assert me.json()["user"]["username"] == person.username
    created = client.post(f"/api/v1/{admin_membership.tenant.slug}/roles/", {"name": "pkce", "rules": []})
    assert created.status_code == 201, created.content


def test_a_code_cannot_be_exchanged_without_its_verifier(browser_app: Any, admin_membership: Membership) -> None:
    code, _verifier = authorize(browser_app, admin_membership.user)

    response = exchange(browser_app, code, None)

    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}
    assert not AccessToken.objects.filter(application=browser_app).exists()


def test_a_code_cannot_be_exchanged_with_another_verifier(browser_app: Any, admin_membership: Membership) -> None:
    code, _verifier = authorize(browser_app, admin_membership.user)
    other_verifier, _other_challenge = pkce_pair()

    response = exchange(browser_app, code, other_verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.filter(application=browser_app).exists()


def test_a_code_is_single_use(browser_app: Any, admin_membership: Membership) -> None:
    code, verifier = authorize(browser_app, admin_membership.user)
    assert exchange(browser_app, code, verifier).status_code == 200

    replayed = exchange(browser_app, code, verifier)

    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"


def test_authorization_without_a_code_challenge_is_refused(browser_app: Any, admin_membership: Membership) -> None:
    browser = Client()
    browser.force_login(admin_membership.user)

    response = browser.get(
        "/o/authorize/",
        {"response_type": "code", "client_id": browser_app.client_id, "redirect_uri": REDIRECT_URI, "scope": "read"},
    )

    # PKCE is required: the client is sent back with an error instead of a consent page.
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_request"]


def test_authorization_asks_an_anonymous_browser_to_sign_in(browser_app: Any) -> None:
    _verifier, challenge = pkce_pair()

    response = Client().get(
        "/o/authorize/",
        {
            "response_type": "code",
            "client_id": browser_app.client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- Scopes ----------------------------------------------------------------------------------------------


def test_a_read_token_can_get_but_not_post(
    admin_membership: Membership, client_credentials: Callable[[str], str]
) -> None:
    client = bearer(client_credentials("read"))
    roles = f"/api/v1/{admin_membership.tenant.slug}/roles/"

    assert client.get(roles).status_code == 200
    body = assert_problem(client.post(roles, {"name": "reader-made", "rules": []}), 403)
    assert "write" in body["detail"]
    assert not Role.objects.filter(name="reader-made").exists()


def test_a_write_token_can_post(admin_membership: Membership, client_credentials: Callable[[str], str]) -> None:
    client = bearer(client_credentials("write"))

    response = client.post(f"/api/v1/{admin_membership.tenant.slug}/roles/", {"name": "writer-made", "rules": []})

    assert response.status_code == 201, response.content
    assert Role.objects.filter(tenant=admin_membership.tenant, name="writer-made").exists()


def test_a_write_scope_does_not_widen_the_owners_roles(client_credentials: Callable[[str], str]) -> None:
    # The owner is a mere member elsewhere: the scope allows writing, the role does not.
    reader = MembershipFactory.create(roles=["member"])
    application = Application.objects.get(name="billing service")
    MembershipFactory.create(user=application.user, tenant=reader.tenant, roles=["viewer"])
    client = bearer(client_credentials("read write"))

    response = client.post(f"/api/v1/{reader.tenant.slug}/roles/", {"name": "nope", "rules": []})

    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/tokens/", {"name": "x"}),
        ("post", "/api/v1/tenants/", {"slug": "made-by-reader", "name": "x"}),
        ("post", "/api/v1/{tenant}/roles/", {"name": "x", "rules": []}),
        ("patch", "/api/v1/{tenant}/roles/{role}/", {"description": "changed"}),
        ("delete", "/api/v1/{tenant}/roles/{role}/", None),
        ("post", "/api/v1/{tenant}/members/", {"username": "{username}", "roles": ["member"]}),
        ("patch", "/api/v1/{tenant}/members/{member}/", {"roles": ["viewer"]}),
        ("delete", "/api/v1/{tenant}/members/{member}/", None),
        ("delete", "/api/v1/tokens/{token}/", None),
    ],
)
def test_every_unsafe_route_refuses_a_read_only_token(
    admin_membership: Membership,
    client_credentials: Callable[[str], str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    get_user_model().objects.filter(pk=admin_membership.user.pk).update(is_staff=True)
    tenant = admin_membership.tenant
    other = MembershipFactory.create(tenant=tenant, roles=["member"])
    names = {
        "tenant": tenant.slug,
        "role": str(tenant.roles.get(name="viewer").pk),
        "member": str(other.pk),
        "username": UserFactory.create().username,
        "token": str(ApiTokenFactory.create(user=admin_membership.user).pk),
    }
    if body is not None:
        body = {k: v.format(**names) if isinstance(v, str) else v for k, v in body.items()}
    client = bearer(client_credentials("read"))

    response = getattr(client, method)(path.format(**names), body)

    problem = assert_problem(response, 403)
    assert "'write' scope" in problem["detail"]


def _drf_views(patterns: list[Any], prefix: str = "") -> list[tuple[str, type[APIView]]]:
    found: list[tuple[str, type[APIView]]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found.extend(_drf_views(entry.url_patterns, prefix + str(entry.pattern)))
        elif isinstance(entry, URLPattern):
            view_class = getattr(entry.callback, "cls", None)
            if isinstance(view_class, type) and issubclass(view_class, APIView):
                found.append((prefix + str(entry.pattern), view_class))
    return found


def test_every_api_route_checks_scopes_unless_it_is_public() -> None:
    views = _drf_views(get_resolver().url_patterns)
    assert len(views) > 5

    for route, view_class in views:
        permission_classes = list(view_class.permission_classes)
        public = permission_classes == [AllowAny]
        assert public or IsAuthenticatedWithScope in permission_classes, route


# --- Refused tokens --------------------------------------------------------------------------------------


def test_an_unknown_oauth2_token_is_refused_with_401(db: None) -> None:
    response = bearer("not-an-issued-token").get("/api/v1/me")

    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_oauth2_token_is_refused_with_401(client_credentials: Callable[[str], str]) -> None:
    token = client_credentials("read")
    assert bearer(token).get("/api/v1/me").status_code == 200
    # Time passes beyond the token's lifetime.
    AccessToken.objects.filter(token=token).update(expires=timezone.now() - timedelta(seconds=1))

    assert_problem(bearer(token).get("/api/v1/me"), 401)


def test_a_revoked_oauth2_token_is_refused_with_401(
    service_app: tuple[Any, str], client_credentials: Callable[[str], str]
) -> None:
    application, raw_secret = service_app
    token = client_credentials("read")

    revoked = Client().post(
        "/o/revoke_token/",
        urlencode({"token": token}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(application.client_id, raw_secret),
    )

    assert revoked.status_code == 200, revoked.content
    assert_problem(bearer(token).get("/api/v1/me"), 401)


@pytest.mark.parametrize("path", ["/o/applications/", "/o/applications/register/", "/o/authorized_tokens/"])
def test_signed_in_users_cannot_register_oauth2_applications_themselves(path: str) -> None:
    client = Client()
    client.force_login(UserFactory.create())

    assert client.get(path).status_code == 404


def test_the_authorization_server_metadata_is_published() -> None:
    response = Client().get("/o/.well-known/oauth-authorization-server")

    assert response.status_code == 200
    assert response.json()["token_endpoint"].endswith("/o/token/")
