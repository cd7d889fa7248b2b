"""An agent's A2A agent card: who it is, where its JSON-RPC endpoint is, what it can do, how to authenticate.

The public card (``/.well-known/agent-card.json``, no credentials) says only what the agent's name and
description already say publicly: one skill, talking to it. The authenticated extended card
(``GetExtendedAgentCard``) adds a skill per tool the agent may call.
"""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    AuthorizationCodeOAuthFlow,
    ClientCredentialsOAuthFlow,
    HTTPAuthSecurityScheme,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from django.conf import settings

from agents.models import Agent
from agents.registry import get_agent_class
from agents.tools import get_tool
from aihub.conf import aihub_settings

MOUNT = "/a2a"
MODES = ["text/plain", "application/json"]
BEARER = "bearer"
OAUTH2 = "oauth2"
OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"


def rpc_path(tenant_slug: str, agent_slug: str) -> str:
    return f"{MOUNT}/{tenant_slug}/{agent_slug}"


def _description(agent: Agent) -> str:
    if agent.description:
        return agent.description
    agent_class = get_agent_class(agent.class_name)
    return agent_class.description if agent_class is not None else f"The {agent.name} agent."


def _security_schemes(base_url: str) -> dict[str, SecurityScheme]:
    scopes = dict(settings.OAUTH2_PROVIDER["SCOPES"])
    return {
        BEARER: SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer",
                description="An aihub API token (aih_…), an OAuth2 access token from this server, or an access "
                "token of a configured OpenID Connect issuer.",
            )
        ),
        # One flow per scheme (OAuthFlows is a oneof in A2A 1.0): browser apps and services each get theirs.
        OAUTH2: SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                description="aihub's OAuth2 server (django-oauth-toolkit): authorization code with PKCE.",
                flows=OAuthFlows(
                    authorization_code=AuthorizationCodeOAuthFlow(
                        authorization_url=f"{base_url}/o/authorize/",
                        token_url=f"{base_url}/o/token/",
                        refresh_url=f"{base_url}/o/token/",
                        scopes=scopes,
                        pkce_required=bool(settings.OAUTH2_PROVIDER.get("PKCE_REQUIRED")),
                    )
                ),
            )
        ),
        OAUTH2_CLIENT_CREDENTIALS: SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                description="aihub's OAuth2 server (django-oauth-toolkit): client credentials, for services.",
                flows=OAuthFlows(
                    client_credentials=ClientCredentialsOAuthFlow(token_url=f"{base_url}/o/token/", scopes=scopes)
                ),
            )
        ),
    }


def agent_card(agent: Agent, *, tenant_slug: str, base_url: str, extended: bool = False) -> AgentCard:
    """The card of ``agent`` as served from ``base_url`` (scheme and host, no trailing slash)."""
    skills = [
        AgentSkill(
            id=agent.slug,
            name=agent.name,
            description=_description(agent),
            tags=["conversation", agent.class_name],
            input_modes=MODES,
            output_modes=MODES,
        )
    ]
    if extended:
        for name in agent.tools:
            tool = get_tool(name)
            if tool is not None:
                skill = AgentSkill(id=f"tool:{tool.name}", name=tool.name, description=tool.description, tags=["tool"])
                skills.append(skill)
    return AgentCard(
        name=agent.name,
        description=_description(agent),
        version=str(agent.version),
        supported_interfaces=[
            AgentInterface(
                url=f"{base_url}{rpc_path(tenant_slug, agent.slug)}",
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            # Push notifications are job webhooks, which need the server's signing key.
            push_notifications=bool(aihub_settings.WEBHOOK_SECRET),
            extended_agent_card=True,
        ),
        security_schemes=_security_schemes(base_url),
        security_requirements=[
            SecurityRequirement(schemes={BEARER: StringList()}),
            SecurityRequirement(schemes={OAUTH2: StringList(list=["read", "write"])}),
            SecurityRequirement(schemes={OAUTH2_CLIENT_CREDENTIALS: StringList(list=["read", "write"])}),
        ],
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=skills,
    )
