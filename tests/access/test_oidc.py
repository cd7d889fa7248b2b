"""Bearer JWTs from external OpenID Connect issuers, validated against a real issuer on a loopback HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import EntryPoint
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.test import override_settings

from aihub.access import oidc
from aihub.access.models import AuditEvent, ExternalIdentity, Membership, Tenant
from aihub.access.oidc import ExternalIdentityClaims, InvalidExternalToken
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import assert_problem, bearer

pytestmark = pytest.mark.django_db

AUDIENCE = "aihub"
REALM = "/realms/acme"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- The issuer ------------------------------------------------------------------------------------------


@dataclass
class FakeIssuerState:
    """What the loopback issuer serves, and how often each path was fetched."""

    base_url: str
    documents: dict[str, Any] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def issuer_server() -> Iterator[FakeIssuerState]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = FakeIssuerState(base_url=f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            document = state.documents.get(self.path)
            body = json.dumps(document).encode() if document is not None else b"{}"
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_key()


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey
    state: FakeIssuerState
    kid: str = "key-1"

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": "f3a1c2d4-0001",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "preferred_username": "alice",
            "email": "alice@example.com",
            "aihub_roles": [],
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})


def _clear_validators() -> None:
    oidc._validators_for.cache_clear()


@contextmanager
def only_issuer(settings: Any, url: str) -> Iterator[None]:
    """AIHUB["OIDC_ISSUERS"] naming just ``url``, for the length of the block."""
    # Validators (and the keys they fetched) are cached per configuration; the block starts from none.
    _clear_validators()
    try:
        with override_settings(AIHUB={**settings.AIHUB, "OIDC_ISSUERS": [{"issuer": url, "audience": AUDIENCE}]}):
            yield
    finally:
        _clear_validators()


def bare_token(url: str, key: rsa.RSAPrivateKey) -> str:
    """A token of the issuer at ``url`` with no more claims than needed to get as far as fetching its keys."""
    return jwt.encode({"iss": url, "sub": "x", "aud": AUDIENCE, "exp": time.time() + 60}, key, "RS256")


@pytest.fixture
def issuer(issuer_server: FakeIssuerState, signing_key: rsa.RSAPrivateKey, settings: Any) -> Iterator[Issuer]:
    """The loopback issuer with its discovery document and JWKS, configured in AIHUB["OIDC_ISSUERS"]."""
    url = issuer_server.base_url + REALM
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    issuer_server.documents = {
        f"{REALM}/.well-known/openid-configuration": {
            "issuer": url,
            "jwks_uri": f"{url}/protocol/openid-connect/certs",
            "id_token_signing_alg_values_supported": ["RS256"],
        },
        f"{REALM}/protocol/openid-connect/certs": {"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]},
    }
    issuer_server.hits.clear()
    with only_issuer(settings, url):
        yield Issuer(url=url, key=signing_key, state=issuer_server)


def failures() -> list[dict[str, Any]]:
    return [event.details for event in AuditEvent.objects.filter(action="auth.failed")]


# --- Valid tokens ----------------------------------------------------------------------------------------


def test_a_valid_token_creates_the_user_its_identity_and_its_membership(issuer: Issuer) -> None:
    tenant = TenantFactory.create(slug="acme")

    me = bearer(issuer.token(aihub_roles=["acme:member"])).get("/api/v1/me")

    assert me.status_code == 200, me.content
    body = me.json()
    assert body["credential"] == {"method": "oidc", "scopes": None, "token_tenant": None}
    assert body["user"]["username"] == "alice"
    assert body["user"]["email"] == "alice@example.com"
    identity = ExternalIdentity.objects.select_related("user").get(issuer=issuer.url, subject="f3a1c2d4-0001")
    assert identity.user.username == "alice"
    assert identity.last_login_at is not None
    membership = Membership.objects.get(user=identity.user, tenant=tenant)
    assert [role.name for role in membership.roles.all()] == ["member"]
    assert [(t["slug"], t["roles"]) for t in body["tenants"]] == [("acme", ["member"])]


def test_the_mapped_role_opens_the_tenant(issuer: Issuer) -> None:
    TenantFactory.create(slug="acme")
    client = bearer(issuer.token(aihub_roles=["acme:admin"]))

    assert client.get("/api/v1/acme/roles/").status_code == 200
    created = client.post("/api/v1/acme/roles/", {"name": "sso-made", "rules": ["aihub.user.agents.>"]})
    assert created.status_code == 201, created.content


def test_a_second_login_updates_the_roles(issuer: Issuer) -> None:
    TenantFactory.create(slug="acme")
    TenantFactory.create(slug="globex")
    assert bearer(issuer.token(aihub_roles=["acme:member"])).get("/api/v1/me").status_code == 200

    second = bearer(issuer.token(aihub_roles=["acme:admin", "acme:viewer", "globex:member"])).get("/api/v1/me")

    assert second.status_code == 200, second.content
    assert {t["slug"]: t["roles"] for t in second.json()["tenants"]} == {
        "acme": ["admin", "viewer"],
        "globex": ["member"],
    }
    assert get_user_model().objects.filter(username__startswith="alice").count() == 1
    assert ExternalIdentity.objects.count() == 1
    changed = AuditEvent.objects.get(action="membership.roles_changed")
    assert changed.details["roles_before"] == ["member"]
    assert changed.details["roles"] == ["admin", "viewer"]


def test_a_login_with_the_same_roles_writes_no_membership_change(issuer: Issuer) -> None:
    TenantFactory.create(slug="acme")
    token = issuer.token(aihub_roles=["acme:member"])
    bearer(token).get("/api/v1/me")

    bearer(token).get("/api/v1/me")

    assert not AuditEvent.objects.filter(action="membership.roles_changed").exists()
    assert AuditEvent.objects.filter(action="membership.created").count() == 1


def test_unknown_tenants_and_roles_in_the_claim_grant_nothing(issuer: Issuer) -> None:
    TenantFactory.create(slug="acme")

    me = bearer(issuer.token(aihub_roles=["initech:member", "acme:overlord", "no-colon"])).get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["tenants"] == []
    assert not Tenant.objects.filter(slug="initech").exists()
    assert_problem(bearer(issuer.token()).get("/api/v1/acme/roles/"), 404)


def test_an_existing_local_user_with_the_same_username_is_not_taken_over(issuer: Issuer) -> None:
    local = MembershipFactory.create(
        user=UserFactory.create(username="alice"), tenant=TenantFactory.create(slug="acme"), roles=["admin"]
    )

    me = bearer(issuer.token()).get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["user"]["id"] != local.user.pk
    assert me.json()["user"]["username"].startswith("alice-")
    assert me.json()["tenants"] == []
    assert not ExternalIdentity.objects.filter(user=local.user).exists()
    assert ExternalIdentity.objects.get(subject="f3a1c2d4-0001").user.username == me.json()["user"]["username"]


def test_the_subject_not_the_username_identifies_the_user(issuer: Issuer) -> None:
    first = bearer(issuer.token(preferred_username="alice")).get("/api/v1/me").json()["user"]["id"]

    # Renamed at the issuer: still the same person, because the subject is the same.
    renamed = bearer(issuer.token(preferred_username="alice.smith")).get("/api/v1/me").json()["user"]["id"]
    # Another person who took the old name: a different user.
    other = bearer(issuer.token(sub="f3a1c2d4-0002", preferred_username="alice")).get("/api/v1/me")

    assert renamed == first
    assert other.status_code == 200
    assert other.json()["user"]["id"] != first


def test_a_username_the_hub_cannot_store_is_made_storable(issuer: Issuer) -> None:
    me = bearer(issuer.token(preferred_username="Alice Smith (Sales)", email="not-an-email")).get("/api/v1/me")

    assert me.status_code == 200, me.content
    user = get_user_model().objects.get(pk=me.json()["user"]["id"])
    user.full_clean()
    assert user.username.startswith("Alice")


def test_keys_are_fetched_once_and_then_cached(issuer: Issuer) -> None:
    for _ in range(3):
        assert bearer(issuer.token()).get("/api/v1/me").status_code == 200

    assert issuer.state.hits[f"{REALM}/.well-known/openid-configuration"] == 1
    assert issuer.state.hits[f"{REALM}/protocol/openid-connect/certs"] == 1


# --- Refused tokens --------------------------------------------------------------------------------------


def test_a_token_signed_by_another_key_is_refused(issuer: Issuer) -> None:
    response = bearer(issuer.token(key=new_key())).get("/api/v1/me")

    body = assert_problem(response, 401)
    assert "Signature" in body["detail"]
    assert not get_user_model().objects.exists()
    assert failures()[0]["method"] == "oidc"


def test_a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused(issuer: Issuer) -> None:
    assert_problem(bearer(issuer.token(key=new_key(), kid="key-2")).get("/api/v1/me"), 401)
    assert not get_user_model().objects.exists()


def test_a_token_for_another_audience_is_refused(issuer: Issuer) -> None:
    body = assert_problem(bearer(issuer.token(aud="some-other-app")).get("/api/v1/me"), 401)

    assert "audience" in body["detail"].lower()
    assert not get_user_model().objects.exists()


def test_a_token_naming_another_issuer_is_refused(issuer: Issuer) -> None:
    # Signed with the right key, but it claims to come from a realm this hub does not trust.
    response = bearer(issuer.token(iss=issuer.state.base_url + "/realms/other")).get("/api/v1/me")

    assert_problem(response, 401)
    assert not get_user_model().objects.exists()


def test_an_issuer_whose_discovery_document_names_another_issuer_is_refused(issuer: Issuer) -> None:
    discovery = issuer.state.documents[f"{REALM}/.well-known/openid-configuration"]
    discovery["issuer"] = "https://impostor.example.com"

    body = assert_problem(bearer(issuer.token()).get("/api/v1/me"), 401)

    assert "different issuer" in body["detail"]
    assert not get_user_model().objects.exists()


def test_an_expired_token_is_refused(issuer: Issuer) -> None:
    long_ago = int(time.time()) - 3600

    body = assert_problem(bearer(issuer.token(iat=long_ago, exp=long_ago + 300)).get("/api/v1/me"), 401)

    assert "expired" in body["detail"].lower()
    assert not get_user_model().objects.exists()


def test_a_token_without_a_subject_is_refused(issuer: Issuer) -> None:
    assert_problem(bearer(issuer.token(sub=None)).get("/api/v1/me"), 401)
    assert not get_user_model().objects.exists()


def test_a_jwt_from_an_issuer_that_is_not_configured_falls_through_to_oauth2_and_is_refused(issuer: Issuer) -> None:
    token = issuer.token(iss="https://sso.unknown.example.com/realms/x")

    response = bearer(token).get("/api/v1/me")

    assert_problem(response, 401)
    assert [details["method"] for details in failures()] == ["oauth2"]
    assert issuer.state.hits.total() == 0
    assert not get_user_model().objects.exists()


def test_a_disabled_user_is_refused(issuer: Issuer) -> None:
    user_id = bearer(issuer.token()).get("/api/v1/me").json()["user"]["id"]
    get_user_model().objects.filter(pk=user_id).update(is_active=False)

    assert_problem(bearer(issuer.token()).get("/api/v1/me"), 401)


def test_an_unreachable_issuer_is_a_401_not_a_server_error(
    settings: Any, signing_key: rsa.RSAPrivateKey, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/realms/gone"
    with only_issuer(settings, url):
        body = assert_problem(bearer(bare_token(url, signing_key)).get("/api/v1/me"), 401)

    assert "unavailable" in body["detail"]


def test_keys_are_never_fetched_over_plain_http_from_a_remote_host(
    settings: Any, signing_key: rsa.RSAPrivateKey
) -> None:
    url = "http://sso.example.com/realms/acme"
    with only_issuer(settings, url):
        body = assert_problem(bearer(bare_token(url, signing_key)).get("/api/v1/me"), 401)

    assert "HTTPS is required" in body["detail"]


# --- The plug-in point -----------------------------------------------------------------------------------

PARTNER_ISSUER = "https://partner.example.com"
PARTNER_SECRET = "a-shared-secret-with-the-partner-of-32+bytes"


class PartnerTokenValidator:
    """A plug-in as a third-party package would ship it: HS256 JWTs signed with a secret shared with a partner."""

    def validate(self, token: str) -> ExternalIdentityClaims | None:
        if jwt.decode(token, options={"verify_signature": False}).get("iss") != PARTNER_ISSUER:
            return None
        try:
            claims = jwt.decode(token, PARTNER_SECRET, algorithms=["HS256"], audience=AUDIENCE)
        except jwt.PyJWTError as exc:
            raise InvalidExternalToken(str(exc)) from exc
        return ExternalIdentityClaims(
            issuer=PARTNER_ISSUER,
            subject=claims["sub"],
            username=claims["sub"],
            tenant_roles={"acme": ["viewer"]},
            claims=claims,
        )


@pytest.fixture
def partner_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The entry point an installed package would declare, in place of the installed distributions."""
    entry_point = EntryPoint(name="partner", value=f"{__name__}:PartnerTokenValidator", group=oidc.ENTRY_POINT_GROUP)

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [entry_point] if group == oidc.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(oidc, "entry_points", entry_points)
    _clear_validators()
    yield
    _clear_validators()


def partner_token(secret: str = PARTNER_SECRET) -> str:
    claims = {"iss": PARTNER_ISSUER, "sub": "partner-bot", "aud": AUDIENCE, "exp": int(time.time()) + 60}
    return jwt.encode(claims, secret, algorithm="HS256")


def test_a_validator_registered_as_an_entry_point_is_used(issuer: Issuer, partner_plugin: None) -> None:
    TenantFactory.create(slug="acme")

    me = bearer(partner_token()).get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == "partner-bot"
    assert me.json()["credential"]["method"] == "oidc"
    assert [(t["slug"], t["roles"]) for t in me.json()["tenants"]] == [("acme", ["viewer"])]
    assert ExternalIdentity.objects.filter(issuer=PARTNER_ISSUER, subject="partner-bot").exists()
    # The configured issuer still works beside the plug-in.
    assert bearer(issuer.token()).get("/api/v1/me").status_code == 200


def test_a_plug_in_can_refuse_a_token(partner_plugin: None) -> None:
    body = assert_problem(bearer(partner_token(secret="x" * 40)).get("/api/v1/me"), 401)

    assert "Signature" in body["detail"]
    assert not get_user_model().objects.exists()


def test_a_plug_in_that_fails_to_load_does_not_break_the_others(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = EntryPoint(name="broken", value="no_such_module_anywhere:Validator", group=oidc.ENTRY_POINT_GROUP)
    monkeypatch.setattr(oidc, "entry_points", lambda *, group: [broken])
    _clear_validators()

    assert bearer(issuer.token()).get("/api/v1/me").status_code == 200


class CrashingValidator:
    def validate(self, token: str) -> ExternalIdentityClaims | None:
        raise RuntimeError("bug in a plug-in")


def test_a_plug_in_that_crashes_while_validating_is_a_401_not_a_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashing = EntryPoint(name="crashing", value=f"{__name__}:CrashingValidator", group=oidc.ENTRY_POINT_GROUP)
    monkeypatch.setattr(oidc, "entry_points", lambda *, group: [crashing])
    _clear_validators()

    body = assert_problem(bearer(partner_token()).get("/api/v1/me"), 401)
    _clear_validators()

    assert "bug in a plug-in" not in body["detail"]


def test_after_a_failed_discovery_the_issuer_is_not_asked_again_for_a_while(
    settings: Any, signing_key: rsa.RSAPrivateKey, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/realms/gone"
    token = bare_token(url, signing_key)
    with only_issuer(settings, url):
        first = assert_problem(bearer(token).get("/api/v1/me"), 401)
        second = assert_problem(bearer(token).get("/api/v1/me"), 401)

    assert "Connection refused" in first["detail"] or "unavailable:" in first["detail"]
    assert "retrying shortly" in second["detail"]
