"""Retrieval in agents: the rag class and the knowledge_search tool, through real jobs on the offline model.

Both emit retrieval.completed with the hits and end their answer with citation blocks (document, chunk id,
quoted text, score); the offline model answers deterministically from the numbered sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aihub.access.models import Tenant
from jobs.models import JobStatus
from knowledge.embedders import Embedder
from knowledge.models import Collection, Document
from knowledge.pipeline import document_ingest
from tests.agents.factories import AgentFactory
from tests.agents.test_agent_classes import assistant_messages, events_of, reply_text, run
from tests.factories import TenantFactory
from tests.knowledge.conftest import minilm  # noqa: F401 - the session-scoped model fixture
from tests.knowledge.factories import CollectionFactory, add_document

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory.create()


@pytest.fixture
def handbook(tenant: Tenant, minilm: Embedder) -> Collection:  # noqa: F811
    collection = CollectionFactory.create(tenant=tenant, slug="handbook")
    texts = {
        "travel.md": "# Travel\n\nEconomy class is booked for flights under six hours. Business class above that.",
        "leave.md": "# Leave\n\nEmployees get 25 vacation days a year. Unused days expire in March.",
    }
    for name, text in texts.items():
        document = add_document(collection, text, filename=name)
        assert document_ingest(document_id=document.pk) == "ready"
    return collection


def test_the_rag_agent_retrieves_then_answers_with_citations(tenant: Tenant, handbook: Collection) -> None:
    agent = AgentFactory.create(tenant=tenant, class_name="rag", config={"collections": ["handbook"], "top_k": 2})
    job = run(agent, "How many vacation days do I get?")
    assert job.status == JobStatus.SUCCEEDED, job.error
    (retrieval,) = [e for e in events_of(job) if e.type == "retrieval.completed"]
    assert retrieval.data["query"] == "How many vacation days do I get?"
    first = retrieval.data["hits"][0]
    assert first["document"]["title"] == "leave.md" and "25 vacation days" in first["text"]

    assert reply_text(job) == (
        "According to [1] leave.md: # Leave Employees get 25 vacation days a year. See also [2]."
    )
    (message,) = assistant_messages(job)
    citations = [block for block in message.content if block["type"] == "citation"]
    assert [c["chunk_id"] for c in citations] == [str(h["chunk_id"]) for h in retrieval.data["hits"]]
    leave = Document.objects.get(title="leave.md")
    assert citations[0]["document_id"] == str(leave.pk)
    assert "25 vacation days" in citations[0]["text"] and citations[0]["score"] > 0


def test_the_rag_agents_config_tunes_hybrid_search(tenant: Tenant, handbook: Collection) -> None:
    # alpha 0: the words alone rank, and only travel.md has "business" (both legs still ran).
    config = {"collections": ["handbook"], "top_k": 1, "alpha": 0.0, "candidates": 2}
    agent = AgentFactory.create(tenant=tenant, class_name="rag", config=config)
    job = run(agent, "Is business time off paid?")
    assert job.status == JobStatus.SUCCEEDED, job.error
    (retrieval,) = [e for e in events_of(job) if e.type == "retrieval.completed"]
    (hit,) = retrieval.data["hits"]
    assert hit["document"]["title"] == "travel.md" and hit["vector_rank"] is not None


def test_a_rag_agents_out_of_range_tuning_fails_its_job(tenant: Tenant, handbook: Collection) -> None:
    agent = AgentFactory.create(
        tenant=tenant, class_name="rag", config={"collections": ["handbook"], "top_k": 5, "candidates": 3}
    )
    job = run(agent, "How many vacation days do I get?")
    (retrieval,) = [e for e in events_of(job) if e.type == "retrieval.completed"]
    assert "candidates must be between top_k (5) and 1000" in retrieval.data["error"]


def test_the_rag_agent_says_so_when_nothing_is_found(tenant: Tenant, minilm: Embedder) -> None:  # noqa: F811
    CollectionFactory.create(tenant=tenant, slug="empty")
    agent = AgentFactory.create(tenant=tenant, class_name="rag", config={"collections": ["empty"]})
    job = run(agent, "Anything at all?")
    assert job.status == JobStatus.SUCCEEDED
    assert reply_text(job) == "I found nothing about that in the knowledge collections."
    assert [e.data["hits"] for e in events_of(job) if e.type == "retrieval.completed"] == [[]]


def test_a_tools_agent_searches_knowledge_and_cites_what_it_found(tenant: Tenant, handbook: Collection) -> None:
    agent = AgentFactory.create(tenant=tenant, class_name="tools", tools=["knowledge_search"])
    job = run(agent, 'use knowledge_search {"query": "business class flights", "top_k": 1}')
    assert job.status == JobStatus.SUCCEEDED, job.error
    types = [e.type for e in events_of(job)]
    assert types.index("tool.completed") < types.index("retrieval.completed")
    (retrieval,) = [e for e in events_of(job) if e.type == "retrieval.completed"]
    assert retrieval.data["hits"][0]["document"]["title"] == "travel.md"
    assert reply_text(job).startswith("According to [1] travel.md: # Travel Economy class is booked")
    (message,) = assistant_messages(job)
    assert [b["chunk_id"] for b in message.content if b["type"] == "citation"] == [
        str(retrieval.data["hits"][0]["chunk_id"])
    ]


def test_knowledge_search_refuses_collections_of_other_tenants(tenant: Tenant, handbook: Collection) -> None:
    stranger = AgentFactory.create(tenant=TenantFactory.create(), class_name="tools", tools=["knowledge_search"])
    job = run(stranger, 'use knowledge_search {"query": "vacation", "collections": ["handbook"]}')
    (completed,) = [e for e in events_of(job) if e.type == "tool.completed"]
    assert completed.data["is_error"] and "No collection handbook" in completed.data["output"]
    assert not [e for e in events_of(job) if e.type == "retrieval.completed"]
