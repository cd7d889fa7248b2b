"""The default DRF permission: an authenticated caller whose credential's scopes allow the method.

What the caller may do inside a tenant is decided by :class:`aihub.access.principal.Principal`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from aihub.access.principal import READ_SCOPE, WRITE_SCOPE, credential_scopes


class IsAuthenticatedWithScope(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        scopes = credential_scopes(request.auth)
        if scopes is None:
            return True
        needed = READ_SCOPE if request.method in permissions.SAFE_METHODS else WRITE_SCOPE
        if needed not in scopes:
            raise exceptions.PermissionDenied(f"This access token lacks the '{needed}' scope.")
        return True


class IsStaff(permissions.BasePermission):
    message = "Only staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_staff)
