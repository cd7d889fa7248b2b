"""DRF authentication classes, tried in order: API token, external OIDC JWT, OAuth2 access token, session."""

from __future__ import annotations

import logging
from typing import Any, cast

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from oauth2_provider.contrib.rest_framework import OAuth2Authentication as _DotOAuth2Authentication
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from aihub.access import services
from aihub.access.models import ApiToken
from aihub.access.oidc import ExternalIdentityClaims, InvalidExternalToken, looks_like_jwt, token_validators

logger = logging.getLogger(__name__)

BEARER_CHALLENGE = 'Bearer realm="aihub"'


def bearer_token(request: Request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        raw = bearer_token(request)
        if raw is None or not raw.startswith(ApiToken.PREFIX):
            return None
        token = services.api_token_authenticate(raw=raw)
        if token is None:
            # Only the public id: any other part of what was sent may be (a typo of) someone's secret.
            public_id = services.api_token_public_id(raw)
            prefix = f"{ApiToken.PREFIX}{public_id}_…" if public_id else f"{ApiToken.PREFIX}…"
            services.audit_record(action="auth.failed", details={"method": "api_token", "prefix": prefix})
            raise exceptions.AuthenticationFailed("The API token is invalid, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


class ExternalJwtAuthentication(authentication.BaseAuthentication):
    """Bearer JWTs from the configured OpenID Connect issuers and plug-in validators."""

    def authenticate(self, request: Request) -> tuple[Any, ExternalIdentityClaims] | None:
        raw = bearer_token(request)
        if raw is None or not looks_like_jwt(raw):
            return None
        for validator in token_validators():
            try:
                identity = validator.validate(raw)
            except InvalidExternalToken as exc:
                services.audit_record(action="auth.failed", details={"method": "oidc", "reason": str(exc)[:200]})
                raise exceptions.AuthenticationFailed(f"The bearer JWT was rejected: {exc}") from exc
            except Exception as exc:
                # A broken plug-in must not turn into a 500 for every caller holding a JWT.
                logger.exception("token validator %s failed", type(validator).__name__)
                services.audit_record(action="auth.failed", details={"method": "oidc", "reason": "validator error"})
                raise exceptions.AuthenticationFailed("The bearer JWT could not be validated.") from exc
            if identity is not None:
                user = services.external_identity_sync(
                    issuer=identity.issuer,
                    subject=identity.subject,
                    username=identity.username,
                    email=identity.email,
                    tenant_roles=identity.tenant_roles,
                )
                if not user.is_active:
                    raise exceptions.AuthenticationFailed("This user is disabled.")
                return user, identity
        return None

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


class OAuth2Authentication(_DotOAuth2Authentication):
    """django-oauth-toolkit's, acting as the application's owner for client-credentials tokens."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = bearer_token(request)
        if raw is None or raw.startswith(ApiToken.PREFIX):
            return None
        result = super().authenticate(request)
        if result is None:
            services.audit_record(action="auth.failed", details={"method": "oauth2"})
            raise exceptions.AuthenticationFailed("The OAuth2 access token is invalid or expired.")
        user, token = result
        if user is None and token.application is not None:
            # Client credentials: the service acts as the user who owns the application.
            user = token.application.user
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("The OAuth2 application has no active owner.")
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session for same-origin pages; DRF enforces CSRF on unsafe methods."""


def authenticate_bearer(raw: str, *, host: str = "") -> tuple[Any, Any]:
    """(user, auth) for a bearer credential, checked by the API's own authentication classes.

    For transports that cannot send an ``Authorization`` header (a browser's WebSocket): the credential is
    tried exactly as the REST API would try it (API token, external OIDC JWT, OAuth2 access token), failures
    audited alike. Raises ``AuthenticationFailed``.
    """
    request = HttpRequest()
    request.method = "GET"
    request.META = {"HTTP_AUTHORIZATION": f"Bearer {raw}", "REQUEST_METHOD": "GET", "SERVER_PORT": "443"}
    if host:
        request.META["HTTP_HOST"] = host
    else:
        request.META["SERVER_NAME"] = "localhost"
    wrapped = Request(request)
    classes = cast(list[type[authentication.BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    for authenticator_class in classes:
        if issubclass(authenticator_class, authentication.SessionAuthentication):
            continue  # a session arrives as a cookie, never as a bearer credential
        try:
            result = authenticator_class().authenticate(wrapped)
        except SuspiciousOperation as exc:  # a Host the OAuth2 check cannot build a URL from
            raise exceptions.AuthenticationFailed("The credential could not be checked.") from exc
        if result is not None:
            return result
    raise exceptions.AuthenticationFailed("The bearer credential is not recognised.")
