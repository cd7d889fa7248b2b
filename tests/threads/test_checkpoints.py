"""Checkpoints and forks (time travel): every turn a runner finishes records the thread as it left it, and a
new thread can start from any checkpoint with the messages up to it and its state, leaving the source alone.

Jobs run as a worker runs them (``run_now``: claim, then the real runner) on the test's thread; the module's
last test does it all on a real daphne server whose embedded worker runs the jobs.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from agents import services as agent_services
from agents.models import Agent
from aihub.access.models import Membership
from jobs import services as job_services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import assert_gap_free, run_now
from tests.servers import http_json
from threads import services
from threads.models import Checkpoint, Message, Thread
from threads.selectors import checkpoint_list, message_list


def turn(agent: Agent, user: User, content: str, thread: Thread | None = None) -> Job:
    job, _ = job_services.job_submit(agent=agent, user=user, content=content, thread=thread)
    return run_now(job)


def texts(thread: Thread) -> list[str]:
    return [block["text"] for m in message_list(thread=thread) for block in m.content if block["type"] == "text"]


@pytest.fixture
def tools_agent(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="helper", class_name="tools", tools=["set_state"])


@pytest.mark.django_db
class TestRecording:
    def test_each_finished_turn_records_its_last_message_event_state_and_agent(
        self, membership: Membership, tools_agent: Agent
    ) -> None:
        first = turn(tools_agent, membership.user, 'use set_state {"key": "plan", "value": "premium"}')
        second = turn(tools_agent, membership.user, "and now?", thread=first.thread)

        older, newer = reversed(checkpoint_list(thread=first.thread))
        assert (older.job_id, newer.job_id) == (first.pk, second.pk)
        assert older.state == newer.state == {"plan": "premium"}  # written by a tool during the turn
        assert older.agent_id == newer.agent_id == tools_agent.pk
        assert older.message_id == uuid.UUID(first.output["message"])
        assert newer.event_sequence == Thread.objects.get(pk=first.thread_id).last_sequence
        final = first.thread.events.get(sequence=older.event_sequence)
        assert (final.type, final.job_id) == ("job.succeeded", first.pk)

    def test_a_failed_turn_is_checkpointed_and_a_job_cancelled_before_it_ran_is_not(
        self, membership: Membership
    ) -> None:
        broken = AgentFactory.create(tenant=membership.tenant, slug="broken", class_name="chat", model="nowhere/x")
        failed = turn(broken, membership.user, "hello")
        queued, _ = job_services.job_submit(agent=broken, user=membership.user, content="again", thread=failed.thread)
        job_services.job_cancel(job=queued)

        assert failed.status == JobStatus.FAILED
        assert [c.job_id for c in checkpoint_list(thread=failed.thread)] == [failed.pk]

    def test_a_turn_after_a_handoff_records_the_target_as_the_active_agent(
        self, membership: Membership, tools_agent: Agent
    ) -> None:
        billing = AgentFactory.create(tenant=membership.tenant, slug="billing")
        agent_services.handoff_create(source=tools_agent, target=billing)

        job = turn(tools_agent, membership.user, 'use transfer_to_agent {"agent": "billing"}')

        assert checkpoint_list(thread=job.thread).get().agent_id == billing.pk


@pytest.mark.django_db
class TestForking:
    def test_a_fork_has_the_messages_up_to_the_checkpoint_its_state_and_a_link_to_the_source(
        self, membership: Membership, tools_agent: Agent
    ) -> None:
        first = turn(tools_agent, membership.user, 'use set_state {"key": "plan", "value": "premium"}')
        turn(tools_agent, membership.user, "second question", thread=first.thread)
        source = Thread.objects.get(pk=first.thread_id)
        checkpoint = checkpoint_list(thread=source).last()
        assert checkpoint is not None and checkpoint.job_id == first.pk

        fork = services.thread_fork(thread=source, checkpoint_id=checkpoint.pk, created_by=membership.user)

        assert fork.tenant_id == source.tenant_id
        assert fork.metadata == {"forked_from": {"thread": str(source.pk), "checkpoint": str(checkpoint.pk)}}
        assert fork.state == {"plan": "premium"}
        copied, original = list(message_list(thread=fork)), list(message_list(thread=source))[:2]
        assert [(m.role, m.content, m.created_at) for m in copied] == [
            (m.role, m.content, m.created_at) for m in original
        ]
        assert {m.metadata["forked_from_message"] for m in copied} == {str(m.pk) for m in original}
        assert not any(m.job_id for m in copied)
        members = set(fork.members.values_list("user_id", "agent_id"))
        assert members == {(membership.user.pk, None), (None, tools_agent.pk)}
        # Its log opens with the copied messages and the state, numbered from 1.
        assert assert_gap_free(fork) == [1, 2, 3]
        assert list(fork.events.values_list("type", flat=True)) == ["message.created"] * 2 + ["state.updated"]

    def test_a_turn_on_the_fork_does_not_touch_the_source(self, membership: Membership, tools_agent: Agent) -> None:
        first = turn(tools_agent, membership.user, "hello")
        source = Thread.objects.get(pk=first.thread_id)
        fork = services.thread_fork(
            thread=source, checkpoint_id=checkpoint_list(thread=source).get().pk, created_by=membership.user
        )
        before = (list(source.messages.values_list("pk", flat=True)), source.last_sequence, source.state)

        on_fork = turn(tools_agent, membership.user, 'use set_state {"key": "branch", "value": "b"}', thread=fork)

        source.refresh_from_db()
        assert on_fork.status == JobStatus.SUCCEEDED
        assert (list(source.messages.values_list("pk", flat=True)), source.last_sequence, source.state) == before
        assert Thread.objects.get(pk=fork.pk).state == {"branch": "b"}
        assert checkpoint_list(thread=source).count() == 1
        assert checkpoint_list(thread=fork).get().job_id == on_fork.pk

    def test_a_checkpoint_of_another_thread_is_refused_and_nothing_is_written(
        self, membership: Membership, tools_agent: Agent
    ) -> None:
        one = turn(tools_agent, membership.user, "one").thread
        other = turn(tools_agent, membership.user, "other").thread
        threads_before = Thread.objects.count()

        with pytest.raises(ValidationError) as refused:
            services.thread_fork(
                thread=one, checkpoint_id=checkpoint_list(thread=other).get().pk, created_by=membership.user
            )

        assert "checkpoint" in refused.value.message_dict
        assert Thread.objects.count() == threads_before


@pytest.mark.django_db
class TestApi:
    def base(self, membership: Membership, thread: Thread) -> str:
        return f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}"

    def test_the_checkpoints_are_listed_newest_first_in_the_list_envelope(
        self, client_as: ClientAs, membership: Membership, tools_agent: Agent
    ) -> None:
        first = turn(tools_agent, membership.user, "one")
        second = turn(tools_agent, membership.user, "two", thread=first.thread)

        response = client_as(membership).get(self.base(membership, first.thread) + "/checkpoints?limit=1")

        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (2, 1, 0)
        assert [item["job"] for item in body["items"]] == [str(second.pk)]
        assert body["items"][0]["event_id"] == Thread.objects.get(pk=first.thread_id).last_sequence

    def test_forking_through_the_api_makes_the_caller_a_member_of_the_new_thread(
        self, client_as: ClientAs, membership: Membership, tools_agent: Agent
    ) -> None:
        thread = turn(tools_agent, membership.user, "one").thread
        checkpoint = checkpoint_list(thread=thread).get()

        response = client_as(membership).post(
            self.base(membership, thread) + "/fork", {"checkpoint": str(checkpoint.pk), "title": "B"}, format="json"
        )

        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["title"], body["metadata"]["forked_from"]["checkpoint"]) == ("B", str(checkpoint.pk))
        fork = Thread.objects.get(pk=body["id"])
        assert fork.members.filter(user=membership.user).exists()
        assert texts(fork) == texts(thread)

    def test_another_tenants_thread_is_a_404_and_another_threads_checkpoint_a_400(
        self, client_as: ClientAs, membership: Membership, tools_agent: Agent
    ) -> None:
        mine = turn(tools_agent, membership.user, "mine").thread
        stranger = MembershipFactory.create(roles=["member"])
        theirs = turn(AgentFactory.create(tenant=stranger.tenant, slug="theirs"), stranger.user, "theirs").thread
        their_checkpoint = checkpoint_list(thread=theirs).get()
        client = client_as(membership)
        threads_before = Thread.objects.count()

        # Their thread under my tenant's URL is the API's one 404; under their tenant's I am no member at all.
        mine_url, their_url = self.base(membership, theirs), f"/api/v1/{stranger.tenant.slug}/threads/{theirs.pk}"
        fork_body = {"checkpoint": str(their_checkpoint.pk)}
        problem = assert_problem(client.post(mine_url + "/fork", fork_body, format="json"), 404)
        assert problem["detail"] == f"No thread {str(theirs.pk)!r}."
        assert_problem(client.get(mine_url + "/checkpoints"), 404)
        assert_problem(client.get(mine_url + "/runtime"), 404)
        assert client.post(their_url + "/fork", fork_body, format="json").status_code in (403, 404)
        assert_invalid(
            client.post(self.base(membership, mine) + "/fork", {"checkpoint": str(their_checkpoint.pk)}, format="json"),
            "checkpoint",
        )
        assert Thread.objects.count() == threads_before
        assert Checkpoint.objects.filter(thread=theirs).count() == 1
        assert Message.objects.filter(thread=theirs).count() == 2


# --- End to end: a real daphne server, its embedded worker running the jobs ---------------------------------


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="drives the embedded server, whatever the suite's configuration: run once, in the embedded suite",
)
def test_a_fork_through_a_real_server_answers_on_its_own_and_leaves_the_source_as_it_was(
    embedded_server: tuple[str, str],
) -> None:
    base, token = embedded_server
    api = f"{base}/api/v1/demo"

    def call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, answer = http_json(api + path, body=body, token=token)
        assert status in (200, 201), (status, json.dumps(answer))
        return answer

    first = call("/agents/echo/messages?wait=true", {"content": "first turn"})
    thread = first["thread"]
    call(f"/threads/{thread}/messages/?wait=true", {"content": "second turn", "agent": "echo"})
    checkpoints = call(f"/threads/{thread}/checkpoints")["items"]
    assert [c["job"] for c in checkpoints][-1] == first["id"]
    source_events = call(f"/threads/{thread}/events/?limit=200")["items"]

    fork = call(f"/threads/{thread}/fork", {"checkpoint": checkpoints[-1]["id"]})
    answered = call(f"/threads/{fork['id']}/messages/?wait=true", {"content": "on the fork"})

    assert answered["status"] == "succeeded"  # the fork's agent answers without being named
    assert [m["content"][0]["text"] for m in call(f"/threads/{fork['id']}/messages/")["items"]] == [
        "first turn",
        "first turn",
        "on the fork",
        "on the fork",
    ]
    assert call(f"/threads/{thread}/events/?limit=200")["items"] == source_events
    assert call(f"/threads/{thread}/runtime")["latest_checkpoint"]["id"] == checkpoints[0]["id"]
