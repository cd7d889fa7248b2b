"""Operators see jobs in the admin, read-only, and cancel them through the service."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from agents.models import Agent
from aihub.access.models import Membership
from jobs import services
from jobs.models import Artifact, Job, JobStatus, PassthroughCall
from tests.factories import UserFactory
from tests.jobs.helpers import run_now

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:jobs_job_changelist")


@pytest.fixture
def admin_site(db: None) -> Client:
    client = Client()
    client.force_login(UserFactory.create(username="operator", is_staff=True, is_superuser=True))
    return client


def submit(agent: Agent, user: User) -> Job:
    return services.job_submit(agent=agent, user=user, content="hello")[0]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_job_list_filters_by_status_agent_and_tenant(admin_site: Client, echo: Agent, user: User) -> None:
    done = run_now(submit(echo, user))
    queued = submit(echo, UserFactory.create())

    everything = admin_site.get(CHANGELIST)
    succeeded = admin_site.get(CHANGELIST, {"status__exact": "succeeded"})
    by_tenant = admin_site.get(CHANGELIST, {"tenant__id__exact": str(echo.tenant_id), "agent__id__exact": str(echo.pk)})

    assert everything.status_code == 200
    assert list(everything.context["cl"].result_list) == [queued, done]
    assert list(succeeded.context["cl"].result_list) == [done]
    assert list(by_tenant.context["cl"].result_list) == [queued, done]


def test_jobs_are_found_by_their_id_and_a_bad_id_finds_nothing(admin_site: Client, echo: Agent, user: User) -> None:
    job = submit(echo, user)
    submit(echo, UserFactory.create())

    assert list(admin_site.get(CHANGELIST, {"q": str(job.pk)}).context["cl"].result_list) == [job]
    assert list(admin_site.get(CHANGELIST, {"q": "not-an-id"}).context["cl"].result_list) == []


def test_a_job_is_shown_read_only(admin_site: Client, echo: Agent, user: User) -> None:
    job = submit(echo, user)

    response = admin_site.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    assert admin_site.get(reverse("admin:jobs_job_add")).status_code == 403


def test_cancel_selected_jobs_cancels_and_reports_the_finished_ones(
    admin_site: Client, echo: Agent, user: User
) -> None:
    done = run_now(submit(echo, user))
    queued = submit(echo, UserFactory.create())
    running = submit(echo, UserFactory.create())
    services.job_claim(job_id=running.pk, worker="w1")

    response = admin_site.post(
        CHANGELIST,
        {"action": "cancel_jobs", "_selected_action": [str(done.pk), str(queued.pk), str(running.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    reported = " ".join(messages_of(response))
    assert "Cancelled 1 job(s)." in reported
    assert "Asked 1 running job(s) to stop" in reported
    assert f"{done.pk}: The job has already ended (succeeded)." in reported
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {done.pk: JobStatus.SUCCEEDED, queued.pk: JobStatus.CANCELLED, running.pk: JobStatus.RUNNING}
    running.refresh_from_db()
    assert running.cancel_requested == "immediate"


def test_a_jobs_artifacts_are_listed_read_only_on_its_page(
    admin_site: Client, echo: Agent, user: User, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    job = submit(echo, user)
    services.artifact_publish(job=job, name="summary.txt", kind="file", content=b"Hello", media_type="text/plain")
    services.artifact_publish(job=job, name="plan", kind="task_list", data={"tasks": ["read"]})

    response = admin_site.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "summary.txt" in page
    assert "task_list" in page
    assert f"artifacts/{job.pk}/" in page
    # The job's page also has its webhook deliveries; this is the artifacts' inline.
    [inline] = [formset for formset in response.context["inline_admin_formsets"] if formset.opts.model is Artifact]
    assert not inline.has_add_permission
    assert not inline.has_delete_permission
    assert not inline.has_change_permission


def test_passthrough_calls_are_listed_read_only(admin_site: Client, membership: Membership) -> None:
    call = PassthroughCall.objects.create(
        tenant=membership.tenant,
        created_by=membership.user,
        kind=PassthroughCall.Kind.IMAGES,
        model="images/dall-e-3",
        input_tokens=12,
        output_tokens=0,
    )

    listing = admin_site.get(reverse("admin:jobs_passthroughcall_changelist"), {"q": "dall-e"})

    assert listing.status_code == 200
    assert "images/dall-e-3" in listing.content.decode()
    assert admin_site.get(reverse("admin:jobs_passthroughcall_add")).status_code == 403
    edited = admin_site.post(reverse("admin:jobs_passthroughcall_change", args=[call.pk]), {"model": "other"})
    assert edited.status_code == 403
