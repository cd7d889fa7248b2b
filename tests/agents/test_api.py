"""/api/v1/{tenant}/agents/...: classes, instances and versions, direct tool calls, and messages to one agent.

Seeing and using an agent needs aihub.user.agents.<slug>, changing it aihub.admin.agents.<slug>; an agent the
caller may not see answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.models import Agent, AgentVersion
from agents.tools import TOOLS, ToolContext, tool
from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from jobs.models import Job, JobStatus
from jobs.tasks import run_job
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.threads.factories import ThreadFactory
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db


def agents_url(tenant: Tenant, *rest: str) -> str:
    return "/".join([f"/api/v1/{tenant.slug}/agents", *rest])


def agent_url(agent: Agent, *rest: str) -> str:
    return agents_url(agent.tenant, agent.slug, *rest)


def member_with_rules(tenant: Tenant, *rules: str) -> Membership:
    access_services.role_create(tenant=tenant, name="custom", rules=list(rules))
    return MembershipFactory.create(tenant=tenant, roles=["custom"])


@pytest.fixture
def helper(membership: Membership) -> Agent:
    """An echo agent in the member's tenant."""
    return AgentFactory.create(tenant=membership.tenant, slug="helper", config={"prefix": "echo: "})


@pytest.fixture
def calculating(membership: Membership) -> Agent:
    return AgentFactory.create(
        tenant=membership.tenant, slug="calc", class_name="tools", tools=["calculator", "set_state", "get_state"]
    )


@pytest.fixture
def wire_money() -> Iterator[str]:
    """A tool that needs a human's approval when an agent calls it."""

    @tool("wire_money", requires_approval=True)
    def wire(context: ToolContext, amount: int) -> str:
        """Send money."""
        return f"sent {amount}"

    yield "wire_money"
    TOOLS.pop("wire_money")


# --- Classes ---------------------------------------------------------------------------------------------


def test_a_member_lists_the_registered_classes_with_their_schemas(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).get(agents_url(membership.tenant, "classes/"))

    assert response.status_code == 200
    classes = {c["name"]: c for c in response.json()}
    assert {"echo", "chat", "tools"} <= classes.keys()
    assert classes["echo"]["needs_model"] is False
    assert "calculator" in classes["tools"]["tools"]
    assert classes["chat"]["config_schema"]["properties"]["history_window"]["default"] == 20


def test_one_class_is_read_by_name(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).get(agents_url(membership.tenant, "classes", "echo"))

    assert response.status_code == 200
    assert response.json()["config_schema"]["properties"].keys() >= {"prefix", "chunk_words"}


def test_an_unknown_class_is_404(client_as: ClientAs, membership: Membership) -> None:
    assert_problem(client_as(membership).get(agents_url(membership.tenant, "classes", "oracle")), 404)


def test_classes_are_not_taken_for_an_agent_slug(client_as: ClientAs, membership: Membership) -> None:
    # agents/classes/ is its own route, listed before agents/<slug>/.
    response = client_as(membership).get(agents_url(membership.tenant, "classes/"))

    assert isinstance(response.json(), list)


def test_classes_need_a_rule_on_agents(client_as: ClientAs, membership: Membership) -> None:
    outsider = member_with_rules(membership.tenant, "aihub.user.threads.>")

    assert_problem(client_as(outsider).get(agents_url(membership.tenant, "classes/")), 404)


# --- Listing and reading ---------------------------------------------------------------------------------


def test_a_member_lists_the_agents_in_an_envelope(client_as: ClientAs, membership: Membership, helper: Agent) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="another")
    AgentFactory.create(slug="elsewhere")  # another tenant

    response = client_as(membership).get(agents_url(membership.tenant, ""))

    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 50, 0)
    assert [a["slug"] for a in body["items"]] == ["another", "helper"]


def test_the_list_filters_by_enabled(client_as: ClientAs, membership: Membership, helper: Agent) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="retired", enabled=False)
    client = client_as(membership)

    enabled = client.get(agents_url(membership.tenant, ""), {"enabled": "true"}).json()["items"]
    disabled = client.get(agents_url(membership.tenant, ""), {"enabled": "false"}).json()["items"]

    assert [a["slug"] for a in enabled] == ["helper"]
    assert [a["slug"] for a in disabled] == ["retired"]
    assert_invalid(client.get(agents_url(membership.tenant, ""), {"enabled": "maybe"}), "enabled")


def test_the_list_shows_only_the_agents_the_callers_rules_name(client_as: ClientAs, helper: Agent) -> None:
    AgentFactory.create(tenant=helper.tenant, slug="secret")
    narrow = member_with_rules(helper.tenant, "aihub.user.agents.helper")

    body = client_as(narrow).get(agents_url(helper.tenant, "")).json()

    assert [a["slug"] for a in body["items"]] == ["helper"]
    assert body["total"] == 1


def test_a_member_reads_one_agent(client_as: ClientAs, membership: Membership, helper: Agent) -> None:
    response = client_as(membership).get(agent_url(helper, ""))

    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "helper"
    assert body["config"] == {"prefix": "echo: ", "chunk_words": 1, "chunk_delay_seconds": 0.0}
    assert body["version"] == 1
    assert body["enabled"] is True


def test_an_agent_the_caller_has_no_rule_for_is_404_like_one_that_does_not_exist(
    client_as: ClientAs, helper: Agent
) -> None:
    AgentFactory.create(tenant=helper.tenant, slug="secret")
    narrow = client_as(member_with_rules(helper.tenant, "aihub.user.agents.helper"))

    hidden = assert_problem(narrow.get(agents_url(helper.tenant, "secret/")), 404)
    missing = assert_problem(narrow.get(agents_url(helper.tenant, "nobody/")), 404)

    assert hidden["title"] == missing["title"]
    for rest in ("versions/", "versions/1", "tools/calculator", "messages"):
        method = narrow.get if rest.startswith("versions") else narrow.post
        assert_problem(method(agents_url(helper.tenant, "secret", rest), {}, format="json"), 404)


def test_agents_of_another_tenant_are_404(client_as: ClientAs, helper: Agent) -> None:
    stranger = MembershipFactory.create(roles=["admin"])
    client = client_as(stranger)

    # The stranger's own tenant has no such agent; the agent's tenant is not theirs at all.
    assert_problem(client.get(f"/api/v1/{stranger.tenant.slug}/agents/helper/"), 404)
    assert_problem(client.get(agent_url(helper, "")), 404)
    assert_problem(client.patch(agent_url(helper, ""), {"name": "Mine"}, format="json"), 404)
    assert_problem(client.delete(agent_url(helper, "")), 404)
    assert Agent.objects.get(pk=helper.pk).name == helper.name


# --- Creating --------------------------------------------------------------------------------------------


def test_an_admin_creates_an_agent(client_as: ClientAs, admin_membership: Membership) -> None:
    body = {
        "slug": "support-bot",
        "name": "Support bot",
        "description": "Answers questions.",
        "class_name": "tools",
        "config": {"temperature": 0.2},
        "model": "offline/aihub-offline-1",
        "system_prompt": "Be helpful.",
        "tools": ["calculator"],
        "enabled": True,
    }

    response = client_as(admin_membership).post(agents_url(admin_membership.tenant, ""), body, format="json")

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["config"] == {
        "temperature": 0.2,
        "max_steps": 5,
        "history_window": 20,
        "vision": False,
        "memory": False,
        "memory_top_k": 5,
    }
    assert (created["version"], created["tools"]) == (1, ["calculator"])
    version = AgentVersion.objects.get(agent__slug="support-bot")
    assert version.created_by == admin_membership.user


def test_a_config_that_fails_the_class_schema_is_400_naming_the_setting(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    body = {"slug": "hot", "class_name": "chat", "config": {"temperature": 5, "colour": "red"}}

    response = client_as(admin_membership).post(agents_url(admin_membership.tenant, ""), body, format="json")

    assert_invalid(response, "config.temperature", "config.colour")
    assert not Agent.objects.filter(slug="hot").exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"slug": "x", "class_name": "oracle"}, ["class_name"]),
        ({"slug": "x", "class_name": "echo", "tools": ["calculator"]}, ["tools"]),
        ({"slug": "x", "class_name": "tools", "tools": ["rm_rf"]}, ["tools"]),
        ({"slug": "not a slug", "class_name": "echo"}, ["slug"]),
        ({"slug": "classes", "class_name": "echo"}, ["slug"]),
        ({"class_name": "echo"}, ["slug"]),
        ({"slug": "x", "class_name": "echo", "colour": "red"}, ["colour"]),
        ({"slug": "x", "class_name": "echo", "config": "prefix"}, ["config"]),
        ({"slug": "x", "class_name": "chat", "model": "no-provider"}, ["model"]),
    ],
)
def test_bad_agents_are_400_naming_the_field(
    client_as: ClientAs, admin_membership: Membership, body: dict[str, Any], fields: list[str]
) -> None:
    response = client_as(admin_membership).post(agents_url(admin_membership.tenant, ""), body, format="json")

    assert_invalid(response, *fields)


def test_a_taken_slug_is_400(client_as: ClientAs, admin_membership: Membership) -> None:
    AgentFactory.create(tenant=admin_membership.tenant, slug="helper")

    response = client_as(admin_membership).post(
        agents_url(admin_membership.tenant, ""), {"slug": "helper", "class_name": "echo"}, format="json"
    )

    assert_invalid(response, "slug")


def test_a_member_who_may_only_use_agents_cannot_create_one(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).post(
        agents_url(membership.tenant, ""), {"slug": "mine", "class_name": "echo"}, format="json"
    )

    assert_problem(response, 403)
    assert not Agent.objects.exists()


def test_a_rule_for_one_slug_allows_creating_that_agent_only(client_as: ClientAs, membership: Membership) -> None:
    client = client_as(member_with_rules(membership.tenant, "aihub.admin.agents.mine"))

    assert client.post(agents_url(membership.tenant, ""), {"slug": "mine", "class_name": "echo"}).status_code == 201
    assert_problem(client.post(agents_url(membership.tenant, ""), {"slug": "other", "class_name": "echo"}), 403)


# --- Changing and deleting -------------------------------------------------------------------------------


def test_an_admin_changes_an_agent_and_gets_a_new_version(client_as: ClientAs, admin_membership: Membership) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant, slug="helper")

    response = client_as(admin_membership).patch(
        agent_url(agent, ""), {"config": {"prefix": "> "}, "enabled": False}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["enabled"]) == (2, False)
    assert response.json()["config"]["prefix"] == "> "
    assert AgentVersion.objects.get(agent=agent, version=2).created_by == admin_membership.user


def test_a_patch_that_changes_nothing_makes_no_version(client_as: ClientAs, admin_membership: Membership) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant, slug="helper", system_prompt="Same.")

    response = client_as(admin_membership).patch(agent_url(agent, ""), {"system_prompt": "Same."}, format="json")

    assert response.json()["version"] == 1


def test_a_bad_patch_is_400_and_changes_nothing(client_as: ClientAs, admin_membership: Membership) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant, slug="helper")
    client = client_as(admin_membership)

    assert_invalid(
        client.patch(agent_url(agent, ""), {"config": {"chunk_words": 0}}, format="json"), "config.chunk_words"
    )
    assert_invalid(client.patch(agent_url(agent, ""), {"slug": "renamed"}, format="json"), "slug")
    assert AgentVersion.objects.filter(agent=agent).count() == 1


def test_a_member_who_may_only_use_an_agent_cannot_change_or_delete_it(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    client = client_as(membership)

    assert_problem(client.patch(agent_url(helper, ""), {"name": "Mine"}, format="json"), 403)
    assert_problem(client.delete(agent_url(helper, "")), 403)
    assert Agent.objects.get(pk=helper.pk).version == 1


def test_an_admin_deletes_an_agent_that_never_ran(client_as: ClientAs, admin_membership: Membership) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant)

    response = client_as(admin_membership).delete(agent_url(agent, ""))

    assert response.status_code == 204
    assert not Agent.objects.filter(slug=agent.slug).exists()


def test_an_agent_with_jobs_is_409_on_delete_and_can_be_disabled_instead(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant, slug="busy")
    client = client_as(admin_membership)
    assert client.post(agent_url(agent, "messages"), {"content": "hi"}, format="json").status_code == 202

    body = assert_problem(client.delete(agent_url(agent, "")), 409)

    assert "disable it instead" in body["detail"]
    assert client.patch(agent_url(agent, ""), {"enabled": False}, format="json").json()["enabled"] is False


# --- Versions --------------------------------------------------------------------------------------------


def test_versions_are_listed_newest_first_and_read_one_by_one(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    agent = AgentFactory.create(tenant=admin_membership.tenant, slug="helper", system_prompt="One.")
    client = client_as(admin_membership)
    client.patch(agent_url(agent, ""), {"system_prompt": "Two."}, format="json")

    listed = client.get(agent_url(agent, "versions/")).json()
    first = client.get(agent_url(agent, "versions", "1"))

    assert listed["total"] == 2
    assert [v["version"] for v in listed["items"]] == [2, 1]
    assert listed["items"][0]["created_by"] == admin_membership.user.username
    assert first.status_code == 200
    assert first.json()["snapshot"]["system_prompt"] == "One."
    assert_problem(client.get(agent_url(agent, "versions", "3")), 404)


# --- Tools -----------------------------------------------------------------------------------------------


def test_a_member_calls_a_tool_of_the_agent(client_as: ClientAs, membership: Membership, calculating: Agent) -> None:
    response = client_as(membership).post(
        agent_url(calculating, "tools", "calculator"), {"arguments": {"expression": "6 * 7"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"output": "42"}


def test_invalid_tool_arguments_are_400_listing_the_fields(
    client_as: ClientAs, membership: Membership, calculating: Agent
) -> None:
    client = client_as(membership)
    url = agent_url(calculating, "tools", "calculator")

    assert_invalid(client.post(url, {"arguments": {}}, format="json"), "arguments.expression")
    assert_invalid(
        client.post(url, {"arguments": {"expression": 1, "x": 2}}, format="json"), "arguments.expression", "arguments.x"
    )
    assert_invalid(client.post(url, {"arguments": "6 * 7"}, format="json"), "arguments")


def test_a_tool_that_fails_is_422_with_its_message(
    client_as: ClientAs, membership: Membership, calculating: Agent
) -> None:
    response = client_as(membership).post(
        agent_url(calculating, "tools", "calculator"), {"arguments": {"expression": "__import__('os')"}}, format="json"
    )

    body = assert_problem(response, 422)
    assert body["detail"].startswith("Only numbers")


def test_unknown_tools_and_tools_the_agent_lacks_are_404(
    client_as: ClientAs, membership: Membership, calculating: Agent
) -> None:
    client = client_as(membership)

    assert_problem(client.post(agent_url(calculating, "tools", "rm_rf"), {}, format="json"), 404)
    assert_problem(client.post(agent_url(calculating, "tools", "current_time"), {}, format="json"), 404)


def test_state_tools_work_on_a_thread_the_caller_can_see(
    client_as: ClientAs, membership: Membership, calculating: Agent
) -> None:
    thread = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)
    client = client_as(membership)

    written = client.post(
        agent_url(calculating, "tools", "set_state"),
        {"arguments": {"key": "plan", "value": "premium"}, "thread": str(thread.pk)},
        format="json",
    )
    read = client.post(
        agent_url(calculating, "tools", "get_state"), {"arguments": {}, "thread": str(thread.pk)}, format="json"
    )

    assert written.json() == {"output": "ok"}
    assert read.json() == {"output": {"plan": "premium"}}
    assert Event.objects.filter(thread=thread, type="state.updated").count() == 1


def test_state_tools_without_a_thread_are_422(client_as: ClientAs, membership: Membership, calculating: Agent) -> None:
    response = client_as(membership).post(agent_url(calculating, "tools", "get_state"), {}, format="json")

    assert_problem(response, 422)


def test_a_thread_the_caller_cannot_see_is_404_and_untouched(
    client_as: ClientAs, membership: Membership, calculating: Agent
) -> None:
    others = ThreadFactory.create(tenant=membership.tenant)  # created by someone else: not a member
    foreign = ThreadFactory.create()

    for thread in (others, foreign):
        response = client_as(membership).post(
            agent_url(calculating, "tools", "set_state"),
            {"arguments": {"key": "k", "value": 1}, "thread": str(thread.pk)},
            format="json",
        )
        assert_problem(response, 404)
        thread.refresh_from_db()
        assert thread.state == {}


def test_a_tool_needing_approval_is_for_agent_admins_only(
    client_as: ClientAs, membership: Membership, wire_money: str
) -> None:
    agent = AgentFactory.create(tenant=membership.tenant, slug="bank", class_name="tools", tools=[wire_money])
    boss = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])
    body = {"arguments": {"amount": 5}}

    assert_problem(client_as(membership).post(agent_url(agent, "tools", wire_money), body, format="json"), 403)
    response = client_as(boss).post(agent_url(agent, "tools", wire_money), body, format="json")
    assert response.json() == {"output": "sent 5"}


def test_calling_a_tool_needs_a_rule_on_that_agent(client_as: ClientAs, calculating: Agent) -> None:
    narrow = client_as(member_with_rules(calculating.tenant, "aihub.user.agents.helper"))

    response = narrow.post(agent_url(calculating, "tools", "calculator"), {"arguments": {"expression": "1"}})

    assert_problem(response, 404)


# --- Messages --------------------------------------------------------------------------------------------


def test_a_message_to_an_agent_starts_a_job_on_a_new_thread(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    response = client_as(membership).post(
        agent_url(helper, "messages"),
        {"content": "Hello there", "additional_instructions": "Be brief.", "context": {"customer": 42}},
        format="json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert (body["status"], body["agent"], body["agent_version"]) == ("queued", "helper", 1)
    assert body["thread"] == str(job.thread_id)
    assert body["input_message"] == job.input["message"]
    assert job.input["context"] == {"customer": 42}
    assert job.input["additional_instructions"] == "Be brief."
    assert job.created_by == membership.user
    thread = Thread.objects.get(pk=job.thread_id)
    assert thread.members.filter(user=membership.user).exists()
    assert thread.members.filter(agent_id=helper.pk).exists()
    assert Message.objects.get(pk=body["input_message"]).content == [{"type": "text", "text": "Hello there"}]


def test_a_message_continues_a_thread_the_caller_can_see(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    thread = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)

    response = client_as(membership).post(
        agent_url(helper, "messages"), {"content": [{"type": "text", "text": "Hi"}], "thread": str(thread.pk)}
    )

    assert response.status_code == 202
    assert response.json()["thread"] == str(thread.pk)


def test_a_thread_the_caller_cannot_see_is_404_and_gets_no_message(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    others = ThreadFactory.create(tenant=membership.tenant)
    foreign = ThreadFactory.create()

    for thread in (others, foreign):
        response = client_as(membership).post(
            agent_url(helper, "messages"), {"content": "hi", "thread": str(thread.pk)}
        )
        assert_problem(response, 404)
    assert not Job.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["content"]),
        ({"content": []}, ["content"]),
        ({"content": [{"type": "hologram"}]}, ["content[0]"]),
        ({"content": "hi", "busy": "shout"}, ["busy"]),
        ({"content": "hi", "thread": "not-a-uuid"}, ["thread"]),
        ({"content": "hi", "context": "secret"}, ["context"]),
        ({"content": "hi", "colour": "red"}, ["colour"]),
    ],
)
def test_bad_messages_are_400_naming_the_field(
    client_as: ClientAs, membership: Membership, helper: Agent, body: dict[str, Any], fields: list[str]
) -> None:
    response = client_as(membership).post(agent_url(helper, "messages"), body, format="json")

    assert_invalid(response, *fields)
    assert not Job.objects.exists()


def test_bad_wait_parameters_are_400(client_as: ClientAs, membership: Membership, helper: Agent) -> None:
    client = client_as(membership)

    assert_invalid(client.post(agent_url(helper, "messages") + "?wait=true&timeout=600", {"content": "hi"}), "timeout")
    assert_invalid(client.post(agent_url(helper, "messages") + "?wait=often", {"content": "hi"}), "wait")
    assert not Job.objects.exists()


def test_a_disabled_agent_is_409(client_as: ClientAs, membership: Membership) -> None:
    agent = AgentFactory.create(tenant=membership.tenant, enabled=False)

    body = assert_problem(client_as(membership).post(agent_url(agent, "messages"), {"content": "hi"}), 409)

    assert "disabled" in body["detail"]
    assert not Message.objects.exists()


def test_a_busy_thread_rejects_by_default_and_enqueues_when_asked(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    client = client_as(membership)
    first = client.post(agent_url(helper, "messages"), {"content": "one"}).json()
    thread = first["thread"]

    assert_problem(client.post(agent_url(helper, "messages"), {"content": "two", "thread": thread}), 409)
    queued = client.post(agent_url(helper, "messages"), {"content": "two", "thread": thread, "busy": "enqueue"})

    assert queued.status_code == 202
    assert Job.objects.filter(thread_id=thread).count() == 2


def test_an_idempotency_key_returns_the_same_job_instead_of_a_second(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    client = client_as(membership)
    headers = {"Idempotency-Key": "order-17"}

    first = client.post(agent_url(helper, "messages"), {"content": "hi"}, format="json", headers=headers)
    again = client.post(agent_url(helper, "messages"), {"content": "hi"}, format="json", headers=headers)

    assert first.json()["id"] == again.json()["id"]
    assert Job.objects.count() == 1
    assert Message.objects.count() == 1
    too_long = client.post(agent_url(helper, "messages"), {"content": "hi"}, headers={"Idempotency-Key": "k" * 201})
    assert_invalid(too_long, "Idempotency-Key")


def test_waiting_answers_200_with_the_result_once_the_job_has_ended(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    client = client_as(membership)
    headers = {"Idempotency-Key": "wait-1"}
    submitted = client.post(agent_url(helper, "messages"), {"content": "Hello"}, format="json", headers=headers)
    run_job(submitted.json()["id"])  # what a worker does with the queued task

    response = client.post(
        agent_url(helper, "messages") + "?wait=true&timeout=5", {"content": "Hello"}, format="json", headers=headers
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == JobStatus.SUCCEEDED
    assert body["output"]["content"] == [{"type": "text", "text": "echo: Hello"}]
    assert body["usage"]["total_tokens"] > 0
    assert body["finished_at"] is not None


def test_waiting_gives_up_after_the_timeout_with_202(
    client_as: ClientAs, membership: Membership, helper: Agent
) -> None:
    started = time.monotonic()

    response = client_as(membership).post(agent_url(helper, "messages") + "?wait=true&timeout=0.3", {"content": "hi"})

    assert response.status_code == 202
    assert response.json()["status"] == JobStatus.QUEUED
    assert 0.3 <= time.monotonic() - started < 3


def test_talking_to_an_agent_needs_a_rule_on_it(client_as: ClientAs, helper: Agent) -> None:
    narrow = client_as(member_with_rules(helper.tenant, "aihub.user.agents.other", "aihub.user.threads.>"))

    assert_problem(narrow.post(agent_url(helper, "messages"), {"content": "hi"}), 404)
    assert not Job.objects.exists()
