"""Which agents a caller may talk to through the front doors, and how a model id or tool name names one.

A caller may belong to several tenants. A bare slug (``assistant``) names an agent of the caller's default
tenant (the one an API token is restricted to, else the membership marked default), ``tenant/slug``
(``acme/assistant``) an agent of any tenant the caller belongs to. Lists show the default tenant's agents by
bare slug and the other tenants' as ``tenant/slug``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from agents.models import Agent
from agents.selectors import agent_list
from aihub.access.models import Membership
from aihub.access.principal import ACTIVE_TENANT, Principal, credential_tenant_id, principal_for

TENANT_SEPARATOR = "/"


@dataclass(frozen=True)
class UsableAgent:
    """An agent the caller may use, with the id the front doors show for it."""

    id: str
    agent: Agent
    principal: Principal


def default_principal(*, user: Any, auth: Any) -> Principal:
    """The caller in its default tenant; Http404 when it belongs to none."""
    return principal_for(user=user, tenant_ref=ACTIVE_TENANT, auth=auth)


def _principals(*, user: Any, auth: Any) -> list[Principal]:
    memberships = Membership.objects.filter(user=user, tenant__is_active=True).select_related("tenant")
    restricted_to = credential_tenant_id(auth)
    if restricted_to is not None:
        memberships = memberships.filter(tenant_id=restricted_to)
    slugs = list(memberships.order_by("tenant__slug").values_list("tenant__slug", flat=True))
    return [principal_for(user=user, tenant_ref=slug, auth=auth) for slug in slugs]


def usable_agents(*, user: Any, auth: Any) -> list[UsableAgent]:
    """The enabled agents the caller may use in every tenant it belongs to (that its credential allows)."""
    try:
        default_tenant_id = default_principal(user=user, auth=auth).tenant.pk
    except Http404:
        return []
    found: list[UsableAgent] = []
    for principal in _principals(user=user, auth=auth):
        is_default = principal.tenant.pk == default_tenant_id
        for agent in agent_list(principal=principal).filter(enabled=True).select_related("tenant"):
            model_id = agent.slug if is_default else f"{principal.tenant.slug}{TENANT_SEPARATOR}{agent.slug}"
            found.append(UsableAgent(id=model_id, agent=agent, principal=principal))
    # The default tenant's bare slugs first, then the others by tenant.
    return sorted(found, key=lambda usable: (TENANT_SEPARATOR in usable.id, usable.id))


def usable_agent(*, user: Any, auth: Any, name: str) -> UsableAgent:
    """The agent a model id (or tool name) names, or Http404: unknown, disabled, not visible, or in a tenant the
    caller does not belong to all look the same."""
    tenant_ref, separator, slug = name.rpartition(TENANT_SEPARATOR)
    if not separator:
        tenant_ref = ACTIVE_TENANT
    if not slug or TENANT_SEPARATOR in tenant_ref:
        raise Http404(f"The model {name!r} does not exist.")
    try:
        principal = principal_for(user=user, tenant_ref=tenant_ref, auth=auth)
    except (Http404, PermissionDenied) as exc:
        raise Http404(f"The model {name!r} does not exist.") from exc
    agent = agent_list(principal=principal).filter(slug=slug, enabled=True).select_related("tenant").first()
    if agent is None:
        raise Http404(f"The model {name!r} does not exist.")
    return UsableAgent(id=name, agent=agent, principal=principal)
