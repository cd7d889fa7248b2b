"""Schedules: an agent run with fixed input on a cron schedule, each firing submitted as an ordinary job.

Beat runs ``jobs.fire_schedules`` every ``JOBS_SCHEDULES_TICK_SECONDS``; it claims each due schedule with a
conditional update of ``next_run_at`` (``WHERE next_run_at = <the tick it read>``), so two beats, or the same
task delivered twice, fire one tick once. A firing goes through ``jobs.services.job_submit`` as the schedule's
``created_by``, after that user's permissions are checked again, so usage limits and the busy-thread policy
apply as to any submission. A firing that cannot submit (lost access, disabled agent, limit reached) is
recorded on the schedule as problem details in ``last_error``. Missed ticks (no beat running) are not caught
up: the next firing is the first tick after now.
"""

from __future__ import annotations

import logging
import uuid
import zoneinfo
from datetime import datetime
from typing import Any

from croniter import croniter
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions

from agents.models import Agent
from aihub.access.principal import Principal, principal_for
from aihub.access.services import audit_record
from aihub.api.problems import _as_api_exception, problem
from jobs import services
from jobs.models import Job, Schedule, ThreadPolicy
from threads.content import validate_content
from threads.models import Thread

logger = logging.getLogger(__name__)

SCHEDULES_RESOURCE = "schedules"
BUSY_POLICIES = ("reject", "enqueue", "interrupt")


# --- Validation ---------------------------------------------------------------------------------------------


def validate_cron(expression: str) -> str:
    """The expression, normalized, when it is a valid five-field cron expression; else ValidationError."""
    normalized = " ".join(str(expression).split())
    if len(normalized.split(" ")) != 5 or not croniter.is_valid(normalized):
        raise ValidationError(
            {"cron": f"{expression!r} is not a cron expression of five fields (minute hour day month weekday)."}
        )
    return normalized


def validate_timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError({"timezone": f"Unknown time zone {name!r}."}) from None


def next_tick(*, cron: str, tz_name: str, after: datetime) -> datetime:
    """The first tick of ``cron`` (read in ``tz_name``) strictly after ``after``, as an aware UTC datetime."""
    local = after.astimezone(validate_timezone(tz_name))
    tick: datetime = croniter(cron, local).get_next(datetime)
    return tick.astimezone(zoneinfo.ZoneInfo("UTC"))


# --- Selectors ----------------------------------------------------------------------------------------------


def schedule_list(*, principal: Principal) -> QuerySet[Schedule]:
    return Schedule.objects.filter(tenant=principal.tenant).select_related("agent", "created_by", "thread")


def schedule_job_list(*, schedule: Schedule) -> QuerySet[Job]:
    return Job.objects.filter(schedule=schedule, tenant_id=schedule.tenant_id).select_related("agent", "thread")


# --- Services -----------------------------------------------------------------------------------------------


def _check(
    *, agent: Agent, cron: str, tz_name: str, content: Any, thread_policy: str, thread: Thread | None, busy: str
) -> str:
    """Validate what a schedule is made of; returns the normalized cron expression."""
    normalized = validate_cron(cron)
    validate_timezone(tz_name)
    if not agent.enabled:
        raise ValidationError({"agent": f"Agent {agent.slug!r} is disabled."})
    try:
        validate_content(content)
    except Exception as error:  # the content validator raises pydantic's or Django's error
        raise ValidationError({"input": str(error)}) from None
    if thread_policy == ThreadPolicy.FIXED and thread is None:
        raise ValidationError({"thread": "A schedule on one fixed thread needs the thread."})
    if thread is not None and thread.tenant_id != agent.tenant_id:
        raise ValidationError({"thread": "The thread belongs to another tenant."})
    if busy not in BUSY_POLICIES:
        raise ValidationError({"busy": f"One of {', '.join(BUSY_POLICIES)}."})
    return normalized


@transaction.atomic
def schedule_create(
    *,
    agent: Agent,
    name: str,
    cron: str,
    content: Any,
    created_by: User,
    tz_name: str = "UTC",
    thread_policy: str = ThreadPolicy.NEW,
    thread: Thread | None = None,
    busy: str = "enqueue",
    enabled: bool = True,
) -> Schedule:
    normalized = _check(
        agent=agent, cron=cron, tz_name=tz_name, content=content, thread_policy=thread_policy, thread=thread, busy=busy
    )
    if Schedule.objects.filter(tenant_id=agent.tenant_id, name=name).exists():
        raise ValidationError({"name": f"A schedule named {name!r} exists already."})
    schedule = Schedule.objects.create(
        tenant_id=agent.tenant_id,
        agent=agent,
        name=name,
        cron=normalized,
        timezone=tz_name,
        input=content,
        thread_policy=thread_policy,
        thread=thread if thread_policy == ThreadPolicy.FIXED else None,
        busy=busy,
        enabled=enabled,
        created_by=created_by,
        next_run_at=next_tick(cron=normalized, tz_name=tz_name, after=timezone.now()) if enabled else None,
    )
    audit_record(
        action="schedule.created", actor=created_by, tenant=schedule.tenant, target=schedule, details={"name": name}
    )
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, actor: User | None = None, **changes: Any) -> Schedule:
    """Change some of: agent, name, cron, tz_name, content, thread_policy, thread, busy, enabled.

    A change of the cron expression, time zone or enabled state recomputes ``next_run_at`` from now.
    """
    locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
    fields = {"tz_name": "timezone", "content": "input"}
    for key, value in changes.items():
        setattr(locked, fields.get(key, key), value)
    if locked.thread_policy == ThreadPolicy.NEW:
        locked.thread = None
    locked.cron = _check(
        agent=locked.agent,
        cron=locked.cron,
        tz_name=locked.timezone,
        content=locked.input,
        thread_policy=locked.thread_policy,
        thread=locked.thread,
        busy=locked.busy,
    )
    if (
        "name" in changes
        and Schedule.objects.filter(tenant_id=locked.tenant_id, name=locked.name).exclude(pk=locked.pk).exists()
    ):
        raise ValidationError({"name": f"A schedule named {locked.name!r} exists already."})
    if {"cron", "tz_name", "enabled"} & changes.keys() or (locked.enabled and locked.next_run_at is None):
        locked.next_run_at = (
            next_tick(cron=locked.cron, tz_name=locked.timezone, after=timezone.now()) if locked.enabled else None
        )
    locked.save()
    audit_record(
        action="schedule.updated",
        actor=actor,
        tenant=locked.tenant,
        target=locked,
        details={"changed": sorted(changes)},
    )
    return locked


@transaction.atomic
def schedule_delete(*, schedule: Schedule, actor: User | None = None) -> None:
    audit_record(
        action="schedule.deleted", actor=actor, tenant=schedule.tenant, target=schedule, details={"name": schedule.name}
    )
    schedule.delete()


def _problem_of(error: Exception) -> dict[str, Any]:
    api_error = _as_api_exception(error)
    if api_error is None:
        return problem(status=500, detail=f"The firing failed: {type(error).__name__}.")
    detail = api_error.detail
    text = detail if isinstance(detail, str) else "; ".join(str(item) for item in _flat(detail))
    return problem(status=api_error.status_code, detail=str(text))


def _flat(detail: Any) -> list[Any]:
    if isinstance(detail, dict):
        return [f"{key}: {item}" for key, value in detail.items() for item in _flat(value)]
    if isinstance(detail, list):
        return [item for value in detail for item in _flat(value)]
    return [detail]


def _submit_as_owner(*, schedule: Schedule, key: str) -> Job:
    """Submit the schedule's job as its owner, whose access is checked now, not when the schedule was made."""
    owner = schedule.created_by
    if not owner.is_active:
        raise exceptions.PermissionDenied(f"The schedule's user {owner.get_username()!r} is inactive.")
    principal = principal_for(user=owner, tenant_ref=schedule.tenant.slug)
    if not principal.can("user", "jobs"):
        raise exceptions.PermissionDenied(f"The schedule's user may no longer submit jobs in {principal.tenant.slug}.")
    from agents.selectors import agent_get
    from threads.selectors import thread_get

    agent = agent_get(principal=principal, slug=schedule.agent.slug)
    thread = None
    if schedule.thread_policy == ThreadPolicy.FIXED:
        if schedule.thread_id is None:
            raise Http404("The schedule's fixed thread was deleted.")
        thread = thread_get(principal=principal, thread_id=schedule.thread_id)
    job, _ = services.job_submit(
        agent=agent,
        user=owner,
        content=schedule.input,
        thread=thread,
        busy=schedule.busy,  # type: ignore[arg-type]
        idempotency_key=key,
    )
    return job


def schedule_fire(*, schedule: Schedule, tick: datetime | None = None) -> Job | None:
    """Submit one firing as an ordinary job; a firing that cannot is recorded in ``last_error`` (None returned).

    ``tick`` is the cron tick being fired (its idempotency key, so a retried firing of the same tick gives the
    same job); None for "run now", which is a firing of its own.
    """
    now = timezone.now()
    key = f"schedule:{schedule.pk}:" + (tick.strftime("%Y%m%dT%H%M%S") if tick else f"now-{uuid.uuid4().hex}")
    job: Job | None = None
    error: dict[str, Any] | None = None
    try:
        with transaction.atomic():
            job = _submit_as_owner(schedule=schedule, key=key)
            Job.objects.filter(pk=job.pk, schedule__isnull=True).update(schedule=schedule)
    except Exception as failure:  # every failure is recorded on the schedule, none stops the other schedules
        error = _problem_of(failure)
        logger.warning("schedule %s (%s) did not fire: %s", schedule.pk, schedule.name, error["detail"])
    Schedule.objects.filter(pk=schedule.pk).update(last_run_at=now, last_job=job, last_error=error, updated_at=now)
    return job


def schedules_fire_due(*, now: datetime | None = None) -> int:
    """Fire every enabled schedule whose tick has come, each tick once; returns how many this call claimed."""
    now = now or timezone.now()
    due = list(
        Schedule.objects.filter(enabled=True, next_run_at__lte=now)
        .select_related("tenant", "agent", "created_by", "thread")
        .order_by("next_run_at")
    )
    claimed = 0
    for schedule in due:
        tick = schedule.next_run_at
        assert tick is not None
        following = next_tick(cron=schedule.cron, tz_name=schedule.timezone, after=now)
        # The claim: only one caller sees its tick still in place (PostgreSQL re-checks the WHERE after waiting
        # for a concurrent update of the row; SQLite serializes writers).
        won = Schedule.objects.filter(pk=schedule.pk, enabled=True, next_run_at=tick).update(next_run_at=following)
        if not won:
            continue
        claimed += 1
        schedule_fire(schedule=schedule, tick=tick)
    return claimed
