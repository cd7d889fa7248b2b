"""Long-term memory: the services and search, and agents recalling and remembering through real jobs.

Jobs run on the offline model, which says what it remembers ("I remember: ..."), so a recalled memory visibly
changes the answer. Embeddings come from the real local model, loaded once per session.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from agents.memory import (
    MEMORY_MAX_CHARS,
    QUERY_MAX_CHARS,
    memory_create,
    memory_list_of_user,
    memory_search,
    memory_update,
    recalled_memories,
)
from agents.models import Agent, Memory, MemoryScope
from agents.tools import ToolContext, ToolError, get_tool
from aihub.access.models import Tenant
from jobs import services as job_services
from jobs.models import Job, JobStatus
from jobs.runner import execute
from knowledge.embedders import Embedder
from tests.agents.factories import AgentFactory
from tests.agents.test_agent_classes import events_of, reply_text
from tests.factories import TenantFactory, UserFactory
from tests.knowledge.conftest import minilm  # noqa: F401 - the session-scoped model fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _model(minilm: Embedder) -> None:  # noqa: F811
    """Every test here embeds: the real model, loaded once per session."""


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory.create()


@pytest.fixture
def user() -> User:
    return UserFactory.create()


def remembered(tenant: Tenant, user: User | None, text: str) -> Memory:
    scope = MemoryScope.USER if user is not None else MemoryScope.TENANT
    return memory_create(tenant=tenant, scope=scope, owner_id=user.pk if user else None, text=text)


def run_as(agent: Agent, user: User, text: str) -> Job:
    """Submit a message as ``user`` and run the job to its end, as a worker would."""
    job, created = job_services.job_submit(agent=agent, user=user, content=text)
    assert created
    claimed = job_services.job_claim(job_id=job.id, worker="test-worker")
    assert claimed is not None
    execute(claimed)
    claimed.refresh_from_db()
    return claimed


def event_data(job: Job, type: str) -> list[dict[str, Any]]:
    return [e.data for e in events_of(job) if e.type == type]


# --- Services and search ------------------------------------------------------------------------------------


def test_a_memory_is_stored_with_its_embedding_and_found_by_meaning(tenant: Tenant, user: User) -> None:
    tea = remembered(tenant, user, "Drinks green tea every morning.")
    remembered(tenant, user, "The quarterly report is due in March.")
    assert tea.dimensions == 384 and tea.embedder == "local/all-MiniLM-L6-v2"

    ranked = memory_search(memories=memory_list_of_user(tenant=tenant, user_id=user.pk), query="favourite drink")
    assert ranked[0].text == "Drinks green tea every morning."
    assert ranked[0].score > ranked[1].score  # type: ignore[attr-defined]


def test_the_same_text_twice_is_one_memory(tenant: Tenant, user: User) -> None:
    first = remembered(tenant, user, "Lives in Bern.")
    again = remembered(tenant, user, "  Lives in Bern.  ")
    assert again.pk == first.pk
    assert Memory.objects.filter(owner=user).count() == 1


def test_empty_and_huge_texts_and_queries_are_refused_and_nothing_is_stored(tenant: Tenant, user: User) -> None:
    for text, message in (("   ", "empty"), ("x" * (MEMORY_MAX_CHARS + 1), "at most")):
        with pytest.raises(ValidationError, match=message):
            remembered(tenant, user, text)
    assert not Memory.objects.exists()
    for query in ("", "q" * (QUERY_MAX_CHARS + 1)):
        with pytest.raises(ValidationError) as error:
            memory_search(memories=Memory.objects.all(), query=query)
        assert "q" in error.value.message_dict


def test_a_users_memory_needs_its_user_and_a_tenants_memory_has_none(tenant: Tenant, user: User) -> None:
    with pytest.raises(ValidationError, match="needs its user"):
        memory_create(tenant=tenant, scope=MemoryScope.USER, text="Orphan.")
    with pytest.raises(ValidationError, match="needs its user"):
        memory_create(tenant=tenant, scope=MemoryScope.TENANT, owner_id=user.pk, text="Owned.")


def test_changing_the_text_embeds_it_again(tenant: Tenant, user: User) -> None:
    memory = remembered(tenant, user, "Likes cats.")
    before = memory.embedding.copy()
    memory_update(memory=memory, text="Plays the cello in an orchestra.", metadata={"source": "user"})
    memory.refresh_from_db()
    assert memory.text == "Plays the cello in an orchestra." and memory.metadata == {"source": "user"}
    assert float(before @ memory.embedding) < 0.9
    (found,) = memory_search(memories=Memory.objects.filter(pk=memory.pk), query="music instrument")
    assert found.pk == memory.pk


def test_recall_sees_the_users_own_and_the_tenants_memories_only(tenant: Tenant, user: User) -> None:
    mine = remembered(tenant, user, "My favourite colour is teal.")
    shared = remembered(tenant, None, "The company colour is orange.")
    remembered(tenant, UserFactory.create(), "My favourite colour is red.")
    remembered(TenantFactory.create(), user, "My favourite colour is purple.")

    found = recalled_memories(tenant_id=tenant.pk, user_id=user.pk, query="Which colour do I like?", top_k=5)
    assert {m.pk for m in found} == {mine.pk, shared.pk}
    anonymous = recalled_memories(tenant_id=tenant.pk, user_id=None, query="Which colour do I like?", top_k=5)
    assert [m.pk for m in anonymous] == [shared.pk]


# --- Agents ------------------------------------------------------------------------------------------------


def test_recalled_memories_change_the_answer_of_an_agent_with_memory(tenant: Tenant, user: User) -> None:
    forgetful = AgentFactory.create(tenant=tenant, class_name="chat")
    mindful = AgentFactory.create(tenant=tenant, class_name="chat", config={"memory": True})
    memory = remembered(tenant, user, "My favourite colour is teal.")
    remembered(tenant, user, "The dentist appointment is on Friday.")

    without = run_as(forgetful, user, "Which colour should my new bike be?")
    assert without.status == JobStatus.SUCCEEDED, without.error
    assert reply_text(without) == "You said: Which colour should my new bike be?"
    assert event_data(without, "memory.retrieved") == []

    job = run_as(mindful, user, "Which colour should my new bike be?")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert reply_text(job).startswith("You said: Which colour should my new bike be? I remember: ")
    assert "My favourite colour is teal" in reply_text(job)
    (retrieved,) = event_data(job, "memory.retrieved")
    assert retrieved["memories"][0]["id"] == str(memory.pk)
    assert retrieved["memories"][0]["text"] == "My favourite colour is teal."
    # The event comes before the model is asked.
    types = [e.type for e in events_of(job)]
    assert types.index("memory.retrieved") < types.index("llm.started")


def test_another_users_memories_are_never_recalled(tenant: Tenant, user: User) -> None:
    agent = AgentFactory.create(tenant=tenant, class_name="chat", config={"memory": True})
    remembered(tenant, UserFactory.create(), "My favourite colour is teal.")
    job = run_as(agent, user, "Which colour should my new bike be?")
    assert reply_text(job) == "You said: Which colour should my new bike be?"
    assert event_data(job, "memory.retrieved") == [{"memories": []}]


def test_a_tools_agent_with_memory_remembers_and_a_later_job_recalls_it(tenant: Tenant, user: User) -> None:
    agent = AgentFactory.create(tenant=tenant, class_name="tools", config={"memory": True})
    job = run_as(agent, user, "remember: I am allergic to peanuts.")
    assert job.status == JobStatus.SUCCEEDED, job.error
    (stored,) = event_data(job, "memory.stored")
    memory = Memory.objects.get(pk=stored["id"])
    assert (memory.text, memory.scope, memory.owner_id) == ("I am allergic to peanuts.", "user", user.pk)
    assert (memory.source_job_id, memory.source_thread_id, memory.source_agent_id) == (job.pk, job.thread_id, agent.pk)

    later = run_as(agent, user, "Can you suggest a snack with nuts?")
    assert later.status == JobStatus.SUCCEEDED, later.error
    assert reply_text(later).endswith("I remember: I am allergic to peanuts.")


def test_nothing_is_remembered_for_an_agent_without_memory(tenant: Tenant, user: User) -> None:
    # Not offered, even when listed among the agent's tools ...
    plain = AgentFactory.create(tenant=tenant, class_name="tools", tools=["remember"])
    job = run_as(plain, user, 'use remember {"text": "I am allergic to peanuts."}')
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert reply_text(job) == 'You said: use remember {"text": "I am allergic to peanuts."}'
    assert event_data(job, "tool.started") == event_data(job, "memory.stored") == []

    # ... and refused when called directly for it.
    remember = get_tool("remember")
    assert remember is not None
    context = ToolContext(tenant_id=tenant.pk, agent_id=plain.pk, user_id=user.pk)
    with pytest.raises(ToolError, match="does not have memory enabled"):
        remember.call(context, {"text": "I am allergic to peanuts."})
    assert not Memory.objects.exists()


def test_an_embedder_that_fails_leaves_the_job_answering_without_memories(
    tenant: Tenant, user: User, settings: Any
) -> None:
    remembered(tenant, user, "My favourite colour is teal.")
    agent = AgentFactory.create(tenant=tenant, class_name="chat", config={"memory": True})
    # Misconfigured: the embedder refuses at once (a provider that is down fails the same way, after retries).
    settings.KNOWLEDGE_DEFAULT_EMBEDDER = "remote/no-such-embedder"

    job = run_as(agent, user, "Which colour should my new bike be?")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert reply_text(job) == "You said: Which colour should my new bike be?"
    (retrieved,) = event_data(job, "memory.retrieved")
    assert retrieved["memories"] == [] and "Unknown embedder" in retrieved["error"]
