"""The model catalogue: built-in models, providers' model lists (cached, and kept when they fail), operators'
prices and visibility, and the /models API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents import catalogue
from agents.models import CatalogueModel, ModelProvider
from aihub.access.models import Membership
from aihub.access.services import role_create
from tests.agents.openai_server import Garbage, OpenAIServer, Status
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ClientAs, assert_problem

pytestmark = pytest.mark.django_db

LISTED: list[dict[str, Any]] = [
    {"id": "gpt-test", "context_length": 32000},
    {"id": "text-embedding-test", "owned_by": "acme"},
    {"id": "whisper-test"},
]


def models_url(membership: Membership, model_id: str = "") -> str:
    return f"/api/v1/{membership.tenant.slug}/models" + (f"/{model_id}" if model_id else "")


def ids(body: dict[str, Any], model_type: str) -> list[str]:
    return [model["id"] for model in body["models"][model_type]]


def list_requests(server: OpenAIServer) -> int:
    return sum(1 for request in server.requests if request.method == "GET" and request.path.endswith("/models"))


def expire_cache(provider: ModelProvider) -> None:
    """As if the TTL had passed since the provider's list was last asked for."""
    ModelProvider.objects.filter(pk=provider.pk).update(models_checked_at=timezone.now() - timedelta(days=1))


@pytest.fixture
def member(client_as: ClientAs, membership: Membership) -> Any:
    return client_as(membership)


# --- Built-ins -------------------------------------------------------------------------------------------------


def test_a_fresh_install_offers_the_offline_chat_model_and_the_local_embedder(
    member: Any, membership: Membership
) -> None:
    response = member.get(models_url(membership))

    assert response.status_code == 200, response.content
    body = response.json()
    assert ids(body, "chat") == ["offline/aihub-offline-1"]
    assert ids(body, "embedding") == ["local/all-MiniLM-L6-v2"]
    embedder = body["models"]["embedding"][0]
    assert (embedder["dimensions"], embedder["source"], embedder["stale"]) == (384, "builtin", False)
    assert embedder["pricing"] == {"input_per_million": 0.0, "output_per_million": 0.0, "currency": "USD"}
    assert (body["stale"], body["providers"]) == (False, [])


# --- Providers' lists ------------------------------------------------------------------------------------------


def test_a_providers_model_list_is_read_grouped_by_type_and_cached(
    member: Any, membership: Membership, loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.model_list = LISTED

    first = member.get(models_url(membership)).json()
    second = member.get(models_url(membership)).json()

    assert ids(first, "chat") == ["loopback/gpt-test", "offline/aihub-offline-1"]
    assert ids(first, "embedding") == ["local/all-MiniLM-L6-v2", "loopback/text-embedding-test"]
    assert ids(first, "audio") == ["loopback/whisper-test"]
    gpt = first["models"]["chat"][0]
    assert (gpt["provider"], gpt["name"], gpt["context_length"], gpt["source"]) == (
        "loopback",
        "gpt-test",
        32000,
        "provider",
    )
    assert first["providers"][0]["name"] == "loopback"
    assert first["providers"][0]["stale"] is False
    assert second == first
    assert list_requests(openai_server) == 1  # the second read came from the cache
    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-loopback-test-key"


def test_a_failing_list_leaves_the_last_good_copy_and_says_so(
    member: Any, membership: Membership, loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.model_list = LISTED
    member.get(models_url(membership))
    openai_server.model_list = Status(503, "down for maintenance")
    expire_cache(loopback_provider)

    body = member.get(models_url(membership)).json()

    assert list_requests(openai_server) == 2
    assert "loopback/gpt-test" in ids(body, "chat")
    assert body["stale"] is True
    status = body["providers"][0]
    assert status["stale"] is True
    assert status["stale_since"] is not None
    assert "503" in status["error"] and "down for maintenance" in status["error"]
    assert body["models"]["chat"][0]["stale"] is True
    assert body["models"]["chat"][1]["stale"] is False  # the built-in is not the provider's

    # The list answers again: fresh, and no longer stale.
    openai_server.model_list = LISTED
    expire_cache(loopback_provider)
    again = member.get(models_url(membership)).json()
    assert again["stale"] is False
    assert again["providers"][0]["stale_since"] is None


def test_a_list_that_never_answered_is_stale_with_no_models(
    member: Any, membership: Membership, loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.model_list = Garbage(b"<html>not json</html>", content_type="text/html")

    body = member.get(models_url(membership)).json()

    assert body["stale"] is True
    assert ids(body, "chat") == ["offline/aihub-offline-1"]
    assert body["providers"][0]["error"]


def test_an_unreachable_provider_is_stale_not_an_error(member: Any, membership: Membership, closed_port: int) -> None:
    ModelProvider.objects.create(name="gone", base_url=f"http://127.0.0.1:{closed_port}/v1", api_key="x")

    response = member.get(models_url(membership))

    assert response.status_code == 200
    assert response.json()["providers"][0]["stale"] is True


def test_a_model_the_list_drops_stays_but_is_marked_unavailable(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.model_list = LISTED
    assert catalogue.catalogue_refresh(provider=loopback_provider)
    openai_server.model_list = LISTED[:1]

    assert catalogue.catalogue_refresh(provider=loopback_provider, force=True)

    gone = CatalogueModel.objects.get(model_id="loopback/text-embedding-test")
    kept = CatalogueModel.objects.get(model_id="loopback/gpt-test")
    assert (gone.available, kept.available) == (False, True)


def test_a_refresh_keeps_what_operators_set(loopback_provider: ModelProvider, openai_server: OpenAIServer) -> None:
    openai_server.model_list = LISTED
    catalogue.catalogue_refresh(provider=loopback_provider)
    whisper = CatalogueModel.objects.get(model_id="loopback/whisper-test")
    catalogue.catalogue_model_update(
        model=whisper, type="chat", context_length=4096, input_price_per_million=Decimal("1.5"), visible=False
    )

    catalogue.catalogue_refresh(provider=loopback_provider, force=True)

    whisper.refresh_from_db()
    assert (whisper.type, whisper.context_length, whisper.input_price_per_million, whisper.visible) == (
        "chat",
        4096,
        Decimal("1.5"),
        False,
    )


def test_a_refresh_is_claimed_once_per_ttl(loopback_provider: ModelProvider, openai_server: OpenAIServer) -> None:
    openai_server.model_list = LISTED

    assert catalogue.catalogue_refresh(provider=loopback_provider) is True
    assert catalogue.catalogue_refresh(provider=loopback_provider) is False

    assert list_requests(openai_server) == 1


# --- Prices and visibility -------------------------------------------------------------------------------------


def test_operators_prices_are_served_and_used_for_costs(member: Any, membership: Membership) -> None:
    catalogue.catalogue_ensure_builtins()
    offline = CatalogueModel.objects.get(model_id="offline/aihub-offline-1")
    catalogue.catalogue_model_update(
        model=offline, input_price_per_million=Decimal("2.5"), output_price_per_million=Decimal("10")
    )

    body = member.get(models_url(membership, "offline/aihub-offline-1")).json()

    assert body["pricing"] == {"input_per_million": 2.5, "output_per_million": 10.0, "currency": "USD"}
    prices = catalogue.model_prices("offline/aihub-offline-1")
    assert prices.cost(input_tokens=1_000_000, output_tokens=500_000) == Decimal("7.5")


def test_a_negative_price_is_refused() -> None:
    catalogue.catalogue_ensure_builtins()
    offline = CatalogueModel.objects.get(model_id="offline/aihub-offline-1")

    with pytest.raises(Exception, match="cannot be negative"):
        catalogue.catalogue_model_update(model=offline, input_price_per_million=Decimal("-1"))


def test_a_hidden_model_is_not_listed_and_not_found(member: Any, membership: Membership) -> None:
    catalogue.catalogue_ensure_builtins()
    embedder = CatalogueModel.objects.get(model_id="local/all-MiniLM-L6-v2")
    catalogue.catalogue_model_update(model=embedder, visible=False)

    body = member.get(models_url(membership)).json()
    detail = member.get(models_url(membership, "local/all-MiniLM-L6-v2"))

    assert ids(body, "embedding") == []
    assert_problem(detail, 404)


def test_one_model_by_its_id(member: Any, membership: Membership) -> None:
    response = member.get(models_url(membership, "local/all-MiniLM-L6-v2"))

    assert response.status_code == 200
    assert response.json()["id"] == "local/all-MiniLM-L6-v2"
    assert_problem(member.get(models_url(membership, "nope/nothing")), 404)


# --- Access ----------------------------------------------------------------------------------------------------


def test_the_catalogue_needs_credentials_and_membership(api_client: Any, client_as: ClientAs) -> None:
    outsider = MembershipFactory.create(roles=["member"])
    other = MembershipFactory.create(roles=["member"])

    assert_problem(api_client.get(models_url(other)), 401)
    assert_problem(client_as(outsider).get(models_url(other)), 404)


def test_a_member_without_a_models_rule_does_not_see_the_catalogue(client_as: ClientAs) -> None:
    tenant = TenantFactory.create()
    role_create(tenant=tenant, name="agents-only", rules=["aihub.user.agents.>", "aihub.user.threads.>"])
    agents_only = MembershipFactory.create(tenant=tenant, roles=["agents-only"])

    assert_problem(client_as(agents_only).get(models_url(agents_only)), 404)


def test_the_default_agent_user_role_sees_the_catalogue(client_as: ClientAs) -> None:
    agent_user = MembershipFactory.create(roles=["agent-user"])

    assert client_as(agent_user).get(models_url(agent_user)).status_code == 200


# --- Admin -----------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_site() -> Client:
    client = Client()
    operator: User = UserFactory.create(username="operator", is_staff=True, is_superuser=True)
    client.force_login(operator)
    return client


def test_operators_price_and_hide_models_in_the_admin(admin_site: Client) -> None:
    catalogue.catalogue_ensure_builtins()
    offline = CatalogueModel.objects.get(model_id="offline/aihub-offline-1")
    change = reverse("admin:agents_cataloguemodel_change", args=[offline.pk])

    response = admin_site.post(
        change,
        {
            "type": "chat",
            "context_length": "16384",
            "dimensions": "",
            "input_price_per_million": "0.5",
            "output_price_per_million": "1.5",
        },
    )

    assert response.status_code == 302, response.content
    offline.refresh_from_db()
    assert (offline.context_length, offline.output_price_per_million, offline.visible) == (
        16384,
        Decimal("1.5"),
        False,
    )
    assert admin_site.get(reverse("admin:agents_cataloguemodel_changelist")).status_code == 200


def test_the_provider_admin_reads_lists_on_request_and_shows_a_stale_one(
    admin_site: Client, loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.model_list = Status(500, "broken")
    changelist = reverse("admin:agents_modelprovider_changelist")

    response = admin_site.post(
        changelist,
        {"action": "refresh_model_lists", "_selected_action": [str(loopback_provider.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "broken" in " ".join(str(m) for m in response.context["messages"])
    assert "stale since" in admin_site.get(changelist).content.decode()
