"""Agent instances are written only through agents.services: every change is a new immutable version."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from rest_framework.exceptions import APIException

from agents import services
from agents.models import Agent, AgentVersion, ModelProvider
from jobs import services as job_services
from tests.agents.factories import AgentFactory
from tests.factories import TenantFactory, UserFactory
from tests.threads.factories import ThreadFactory
from threads.models import ThreadMember

pytestmark = pytest.mark.django_db


def versions_of(agent: Agent) -> list[int]:
    return list(AgentVersion.objects.filter(agent=agent).order_by("version").values_list("version", flat=True))


# --- Creating --------------------------------------------------------------------------------------------


def test_a_new_agent_has_version_one_with_its_settings_frozen() -> None:
    author = UserFactory.create()

    agent = services.agent_create(
        tenant=TenantFactory.create(), slug="helper", class_name="chat", system_prompt="Be kind.", created_by=author
    )

    version = AgentVersion.objects.get(agent=agent)
    assert (agent.version, version.version, version.created_by) == (1, 1, author)
    assert version.snapshot["system_prompt"] == "Be kind."
    assert version.snapshot["class_name"] == "chat"


def test_the_name_defaults_to_the_slug() -> None:
    assert AgentFactory.create(slug="helper", name="").name == "helper"


def test_config_is_stored_normalised_with_the_class_defaults_filled_in() -> None:
    agent = AgentFactory.create(class_name="chat", config={"temperature": 0.5})

    assert agent.config == {
        "temperature": 0.5,
        "max_tokens": None,
        "history_window": 20,
        "vision": False,
        "memory": False,
        "memory_top_k": 5,
    }


def test_config_that_fails_the_class_schema_is_refused_with_the_path_of_each_error() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(class_name="chat", config={"temperature": 9, "colour": "blue"})

    assert set(refused.value.message_dict) == {"config.temperature", "config.colour"}
    assert not Agent.objects.exists()


def test_a_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(config=["not", "an", "object"])

    assert set(refused.value.message_dict) == {"config"}


def test_unknown_classes_are_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(class_name="oracle")

    assert set(refused.value.message_dict) == {"class_name"}


def test_unknown_tools_are_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(class_name="tools", tools=["calculator", "rm_rf"])

    assert "rm_rf" in refused.value.message_dict["tools"][0]


def test_classes_without_tools_refuse_tools() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(class_name="echo", tools=["calculator"])

    assert "uses no tools" in refused.value.message_dict["tools"][0]


def test_duplicate_tools_are_stored_once() -> None:
    agent = AgentFactory.create(class_name="tools", tools=["calculator", "calculator", "current_time"])

    assert agent.tools == ["calculator", "current_time"]


def test_a_model_id_names_its_provider() -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(class_name="chat", model="gpt-4o")

    assert set(refused.value.message_dict) == {"model"}


def test_slugs_are_unique_in_a_tenant_but_not_across_tenants() -> None:
    first = AgentFactory.create(slug="helper")
    AgentFactory.create(slug="helper")  # another tenant

    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(slug="helper", tenant=first.tenant)

    assert set(refused.value.message_dict) == {"slug"}


@pytest.mark.parametrize("slug", ["classes", "graph"])
def test_slugs_that_are_paths_of_the_agents_api_are_reserved(slug: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(slug=slug)

    assert set(refused.value.message_dict) == {"slug"}


def test_fields_agents_do_not_have_are_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        services.agent_create(tenant=TenantFactory.create(), slug="x", class_name="echo", colour="blue")

    assert set(refused.value.message_dict) == {"colour"}


# --- Changing --------------------------------------------------------------------------------------------


def test_every_change_makes_a_new_version_and_earlier_versions_stay_as_they_were() -> None:
    agent = AgentFactory.create(class_name="chat", system_prompt="One.")
    editor = UserFactory.create()

    services.agent_update(agent=agent, system_prompt="Two.", updated_by=editor)
    agent = services.agent_update(agent=agent, config={"temperature": 1.0})

    assert agent.version == 3
    assert versions_of(agent) == [1, 2, 3]
    snapshots = {v.version: v for v in AgentVersion.objects.filter(agent=agent)}
    assert snapshots[1].snapshot["system_prompt"] == "One."
    assert snapshots[2].snapshot["system_prompt"] == "Two."
    assert snapshots[2].created_by == editor
    assert snapshots[2].snapshot["config"]["temperature"] is None
    assert snapshots[3].snapshot["config"]["temperature"] == 1.0


def test_a_change_that_alters_nothing_makes_no_version() -> None:
    agent = AgentFactory.create(class_name="chat", config={"history_window": 20}, system_prompt="Same.")

    # {} normalises to the defaults already stored, so it is no change either.
    agent = services.agent_update(agent=agent, system_prompt="Same.", config={})

    assert agent.version == 1
    assert versions_of(agent) == [1]


def test_a_refused_change_leaves_the_agent_and_its_versions_alone() -> None:
    agent = AgentFactory.create(class_name="chat")

    with pytest.raises(ValidationError):
        services.agent_update(agent=agent, config={"temperature": -1}, system_prompt="Changed.")

    agent.refresh_from_db()
    assert (agent.version, agent.system_prompt) == (1, "")
    assert versions_of(agent) == [1]


def test_changing_the_class_validates_the_config_against_the_new_class() -> None:
    agent = AgentFactory.create(class_name="echo", config={"prefix": "> "})

    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, class_name="chat")

    assert "config.prefix" in refused.value.message_dict
    agent = services.agent_update(agent=agent, class_name="chat", config={})
    assert (agent.class_name, agent.version) == ("chat", 2)


def test_the_slug_cannot_be_changed() -> None:
    agent = AgentFactory.create()

    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, slug="renamed")

    assert set(refused.value.message_dict) == {"slug"}


# --- Deleting --------------------------------------------------------------------------------------------


def test_an_agent_that_never_ran_is_deleted_with_its_versions_and_thread_memberships() -> None:
    agent = AgentFactory.create()
    agent_id = agent.pk
    ThreadFactory.create(tenant=agent.tenant, agent_ids=[agent_id])

    services.agent_delete(agent=agent)

    assert not Agent.objects.filter(pk=agent_id).exists()
    assert not AgentVersion.objects.filter(agent_id=agent_id).exists()
    assert not ThreadMember.objects.filter(agent_id=agent_id).exists()


def test_an_agent_with_jobs_cannot_be_deleted_and_is_kept_whole() -> None:
    agent = AgentFactory.create()
    job_services.job_submit(agent=agent, user=UserFactory.create(), content="hi")

    with pytest.raises(APIException) as refused:
        services.agent_delete(agent=agent)

    assert refused.value.status_code == 409
    assert "disable it instead" in str(refused.value.detail)
    assert Agent.objects.filter(pk=agent.pk).exists()
    assert ThreadMember.objects.filter(agent_id=agent.pk).exists()


# --- Model providers -------------------------------------------------------------------------------------


def test_a_provider_update_without_a_key_keeps_the_stored_key() -> None:
    provider = services.model_provider_create(name="vllm", base_url="http://127.0.0.1:8000/v1", api_key="sk-1")

    provider = services.model_provider_update(provider=provider, timeout_seconds=5.0, api_key=None)

    assert (provider.api_key, provider.timeout_seconds) == ("sk-1", 5.0)


def test_a_provider_key_can_be_replaced_or_removed() -> None:
    provider = services.model_provider_create(name="vllm", base_url="http://127.0.0.1:8000/v1", api_key="sk-1")

    assert services.model_provider_update(provider=provider, api_key="sk-2").api_key == "sk-2"
    assert services.model_provider_update(provider=provider, api_key="").api_key == ""


def test_provider_names_are_slugs() -> None:
    with pytest.raises(ValidationError) as refused:
        services.model_provider_create(name="not a slug")

    assert "name" in refused.value.message_dict
    assert not ModelProvider.objects.exists()
