"""Bearer JWTs from external OpenID Connect issuers (Keycloak, Entra ID, ...), and the validator plug-in point.

An issuer is configured in ``AIHUB["OIDC_ISSUERS"]``::

    {"issuer": "https://sso.example.com/realms/acme", "audience": "aihub",
     "username_claim": "preferred_username", "email_claim": "email", "roles_claim": "aihub_roles"}

Its discovery document gives the JWKS address; signature, issuer, audience and expiry are checked. The roles
claim holds ``"<tenant slug>:<role name>"`` strings. More validators come from the entry point group
``aihub.token_validators``: each entry is a class taking no arguments whose ``validate(token)`` returns an
:class:`ExternalIdentityClaims`, None when the token is not its own, or raises :class:`InvalidExternalToken`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
import requests

from aihub.conf import aihub_settings

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "aihub.token_validators"


class InvalidExternalToken(Exception):
    """The token claims to come from a known issuer but does not validate."""


@dataclass(frozen=True)
class ExternalIdentityClaims:
    issuer: str
    subject: str
    username: str
    email: str = ""
    tenant_roles: dict[str, list[str]] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)


class TokenValidator(Protocol):
    def validate(self, token: str) -> ExternalIdentityClaims | None: ...


def check_issuer_url(url: str) -> str:
    """Issuer and JWKS addresses must be HTTPS; plain HTTP is allowed only on loopback (local Keycloak, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return url
    raise InvalidExternalToken(f"Refusing to fetch keys from {url!r}: HTTPS is required.")


def _tenant_roles(values: Any) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    for value in values if isinstance(values, list) else []:
        if isinstance(value, str) and ":" in value:
            tenant, _, role = value.partition(":")
            mapping.setdefault(tenant.strip("/"), []).append(role)
    return mapping


class OidcIssuerValidator:
    """Validates the JWTs of one configured issuer."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.issuer: str = config["issuer"].rstrip("/")
        self.audience: str | list[str] = config["audience"]
        self.algorithms: list[str] = config.get("algorithms", ["RS256", "ES256", "PS256"])
        self.username_claim: str = config.get("username_claim", "preferred_username")
        self.email_claim: str = config.get("email_claim", "email")
        self.roles_claim: str = config.get("roles_claim", "aihub_roles")
        self.discovery_url: str = config.get("discovery_url", f"{self.issuer}/.well-known/openid-configuration")
        self._lock = threading.Lock()
        self._jwks_client: jwt.PyJWKClient | None = None
        self._fetched_at = 0.0
        self._failed_until = 0.0

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks_client is None or time.monotonic() - self._fetched_at > aihub_settings.OIDC_CACHE_SECONDS:
                # After a failure, refuse at once for a while instead of making every request wait on the issuer.
                if time.monotonic() < self._failed_until:
                    raise InvalidExternalToken("The issuer's discovery document is unavailable (retrying shortly).")
                timeout = aihub_settings.OIDC_HTTP_TIMEOUT_SECONDS
                try:
                    response = requests.get(check_issuer_url(self.discovery_url), timeout=timeout)
                    response.raise_for_status()
                    document = response.json()
                except (requests.RequestException, ValueError) as exc:
                    self._failed_until = time.monotonic() + aihub_settings.OIDC_FAILURE_BACKOFF_SECONDS
                    raise InvalidExternalToken(f"The issuer's discovery document is unavailable: {exc}") from exc
                if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                    raise InvalidExternalToken("The discovery document names a different issuer.")
                jwks_uri = check_issuer_url(str(document.get("jwks_uri", "")))
                self._jwks_client = jwt.PyJWKClient(
                    jwks_uri,
                    cache_keys=True,
                    lifespan=aihub_settings.OIDC_CACHE_SECONDS,
                    timeout=int(timeout) or 1,
                )
                self._fetched_at = time.monotonic()
            return self._jwks_client

    def validate(self, token: str) -> ExternalIdentityClaims | None:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if str(unverified.get("iss", "")).rstrip("/") != self.issuer:
            return None
        try:
            signing_key = self._jwks().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=unverified["iss"],
                leeway=aihub_settings.OIDC_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidExternalToken(str(exc)) from exc
        subject = str(claims["sub"])
        return ExternalIdentityClaims(
            issuer=self.issuer,
            subject=subject,
            username=str(claims.get(self.username_claim) or subject)[:150],
            email=str(claims.get(self.email_claim) or ""),
            tenant_roles=_tenant_roles(claims.get(self.roles_claim)),
            claims=claims,
        )


@lru_cache(maxsize=1)
def _validators_for(issuers_key: str) -> tuple[TokenValidator, ...]:
    configured: list[TokenValidator] = [OidcIssuerValidator(c) for c in aihub_settings.OIDC_ISSUERS]
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            configured.append(entry_point.load()())
        except Exception:
            logger.exception("token validator plug-in %s failed to load", entry_point.name)
    return tuple(configured)


def token_validators() -> tuple[TokenValidator, ...]:
    """The configured validators, built once per configuration (their key caches live inside them)."""
    return _validators_for(repr(aihub_settings.OIDC_ISSUERS))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")
