"""Usage accounting and usage limits: what jobs cost, reports over them, and limits per role.

**Accounting.** A job's usage (tokens from the run's ``llm.completed`` events) is priced when the job ends, at the
catalogue's prices for the model its agent version names (``agents.catalogue.model_prices``), and stored in the
job's ``usage`` (also in its final event) and in columns that reports aggregate in SQL.

**Limits.** A role's ``UsageLimit`` gives each member with the role a budget per calendar window (UTC). Admission
happens inside the submission's transaction: the member's ``UsageCounter`` rows of the matching limits are
locked (``SELECT ... FOR UPDATE``, in id order: one lock order everywhere), and a job is admitted only while
something is left (``used + reserved < amount``); it then reserves its estimate, at most what is left. Two jobs
racing for the last tokens queue on the counter's row lock, so the second sees the first's reservation and is
refused. When the job ends (``job_finish``) the reservation is released and the real usage added, under the same
lock. A job can use more than it reserved; the next one is refused then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from agents.catalogue import model_prices
from agents.models import Agent, CatalogueModel
from aihub.api.problems import ProblemException
from jobs.models import (
    Job,
    LimitPeriod,
    LimitTarget,
    LimitUnit,
    PassthroughCall,
    UsageCounter,
    UsageLimit,
    UsageReservation,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from aihub.access.models import Role, Tenant

# --- Pricing -------------------------------------------------------------------------------------------------


def usage_priced(*, model: str, usage: dict[str, Any]) -> tuple[dict[str, Any], Decimal]:
    """The usage as a job records it (tokens, cost, currency, model) and its cost, at the catalogue's prices."""
    input_tokens = max(0, int(usage.get("input_tokens", 0) or 0))
    output_tokens = max(0, int(usage.get("output_tokens", 0) or 0))
    # Nothing used costs nothing at any price: the catalogue is not read for it.
    used = input_tokens or output_tokens
    cost = model_prices(model).cost(input_tokens=input_tokens, output_tokens=output_tokens) if used else Decimal(0)
    body = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost": float(round(cost, 10)),
        "currency": settings.USAGE_CURRENCY,
        "model": model,
    }
    return body, cost


# --- Patterns and windows ------------------------------------------------------------------------------------


def validate_pattern(pattern: str) -> str:
    """``pattern`` when well formed (segments split by ``/``; ``*`` one segment, ``>`` the rest), else ValueError."""
    if not pattern or len(pattern) > 300:
        raise ValueError("A pattern has 1 to 300 characters, e.g. '>', 'support-bot', 'openai/*'.")
    segments = pattern.split("/")
    for position, segment in enumerate(segments):
        if not segment or segment != segment.strip():
            raise ValueError(f"Pattern {pattern!r} has an empty or padded segment.")
        if segment == ">" and position != len(segments) - 1:
            raise ValueError(f"Pattern {pattern!r}: '>' may only be the last segment.")
    return pattern


def pattern_matches(pattern: str, name: str) -> bool:
    """The matching of ``aihub.access.rules.rule_matches``, over ``/``-separated segments (model ids have dots)."""
    pattern_segments, name_segments = pattern.split("/"), name.split("/")
    for position, segment in enumerate(pattern_segments):
        if segment == ">":
            return True
        if position >= len(name_segments):
            return False
        if segment != "*" and segment != name_segments[position]:
            return False
    return len(pattern_segments) == len(name_segments)


def limit_applies(limit: UsageLimit, *, agent_slug: str, model: str) -> bool:
    subject = agent_slug if limit.target == LimitTarget.AGENTS else model
    return bool(subject) and pattern_matches(limit.pattern, subject)


def window(period: str, at: datetime) -> tuple[datetime, datetime]:
    """The calendar window (UTC) of ``period`` that contains ``at``: [start, end)."""
    at = at.astimezone(UTC)
    if period == LimitPeriod.HOUR:
        start = at.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == LimitPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == LimitPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(round(value, 10))


# --- Admission and settlement --------------------------------------------------------------------------------


class UsageLimitExceeded(ProblemException):
    status_code = 429
    type_slug = "usage-limit-exceeded"
    title = "Usage limit reached"
    default_code = "usage_limit_exceeded"


@dataclass(frozen=True)
class LimitState:
    """One limit of one member in its current window."""

    limit: UsageLimit
    used: Decimal
    reserved: Decimal
    window_start: datetime
    resets_at: datetime

    @property
    def ratio(self) -> float:
        return float((self.used + self.reserved) / self.limit.amount) if self.limit.amount else 1.0

    def body(self) -> dict[str, Any]:
        return {
            "id": str(self.limit.pk),
            "name": self.limit.name,
            "role": self.limit.role.name,
            "target": self.limit.target,
            "pattern": self.limit.pattern,
            "unit": self.limit.unit,
            "amount": _number(self.limit.amount),
            "period": self.limit.period,
            "used": _number(self.used),
            "reserved": _number(self.reserved),
            "window_start": self.window_start.isoformat().replace("+00:00", "Z"),
            "resets_at": self.resets_at.isoformat().replace("+00:00", "Z"),
        }

    def header(self) -> str:
        """One ``X-Usage-Warning`` entry: ``<name>; used=<share>; resets=<time>``."""
        return (
            f"{self.limit.name}; role={self.limit.role.name}; used={self.ratio:.2f}; resets={self.body()['resets_at']}"
        )


def member_limits(*, tenant: Tenant | Any, user: User) -> QuerySet[UsageLimit]:
    """The enabled limits of the roles ``user`` holds in ``tenant``."""
    return (
        UsageLimit.objects.filter(
            enabled=True, role__tenant=tenant, role__memberships__user=user, role__memberships__tenant=tenant
        )
        .select_related("role")
        .distinct()
        .order_by("pk")
    )


def _used_before(limit: UsageLimit, user: User, start: datetime) -> Decimal:
    """What the member's finished jobs used in the window before the counter existed (a limit added mid-window
    counts the window's earlier jobs too)."""
    rows = (
        Job.objects.filter(tenant_id=limit.role.tenant_id, created_by=user, created_at__gte=start)
        .exclude(finished_at__isnull=True)
        .values("agent__slug", "model")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")), cost=Sum("cost"))
    )
    calls = (
        PassthroughCall.objects.filter(tenant_id=limit.role.tenant_id, created_by=user, created_at__gte=start)
        .values("model")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")), cost=Sum("cost"))
    )
    total = Decimal(0)
    for row in [*rows, *({**call, "agent__slug": ""} for call in calls)]:
        if limit_applies(limit, agent_slug=row["agent__slug"], model=row["model"]):
            total += Decimal(row["tokens"] or 0) if limit.unit == LimitUnit.TOKENS else Decimal(row["cost"] or 0)
    return total


def _locked_counters(limits: list[UsageLimit], user: User, now: datetime) -> list[tuple[UsageLimit, UsageCounter]]:
    """The member's counters of ``limits`` in their current windows, created when missing, row-locked."""
    windows = {limit.pk: window(limit.period, now) for limit in limits}
    wanted = Q()
    for limit in limits:
        wanted |= Q(limit=limit, window_start=windows[limit.pk][0])
    present = set(UsageCounter.objects.filter(wanted, user=user).values_list("limit_id", flat=True))
    missing = [
        UsageCounter(
            limit=limit,
            user=user,
            window_start=windows[limit.pk][0],
            used=_used_before(limit, user, windows[limit.pk][0]),
        )
        for limit in limits
        if limit.pk not in present
    ]
    # A concurrent first job may insert the same row: ON CONFLICT DO NOTHING, then both lock the one row.
    UsageCounter.objects.bulk_create(missing, ignore_conflicts=True)
    counters = {
        c.limit_id: c for c in UsageCounter.objects.select_for_update().filter(wanted, user=user).order_by("pk")
    }
    return [(limit, counters[limit.pk]) for limit in limits]


def _estimate(limit: UsageLimit, *, model: str, input_tokens: int) -> Decimal:
    output_tokens = settings.JOBS_USAGE_RESERVE_TOKENS
    if limit.unit == LimitUnit.TOKENS:
        return Decimal(input_tokens + output_tokens)
    return model_prices(model).cost(input_tokens=input_tokens, output_tokens=output_tokens)


def usage_admit(*, job: Job, user: User, agent_slug: str, input_tokens: int) -> list[LimitState]:
    """Reserve the new ``job``'s estimate on every limit of ``user`` that applies, or raise UsageLimitExceeded.

    Call inside the transaction that creates the job (a refusal undoes it). Returns the limits the job brought
    to ``JOBS_USAGE_WARNING_RATIO`` or beyond, for the response's warning header.
    """
    limits = [
        limit
        for limit in member_limits(tenant=job.tenant_id, user=user)
        if limit_applies(limit, agent_slug=agent_slug, model=job.model)
    ]
    if not limits:
        return []
    now = timezone.now()
    locked = _locked_counters(limits, user, now)
    for limit, counter in locked:
        if counter.used + counter.reserved >= limit.amount:
            _refuse(
                LimitState(limit, counter.used, counter.reserved, counter.window_start, window(limit.period, now)[1]),
                now,
            )
    warnings = []
    for limit, counter in locked:
        left = limit.amount - counter.used - counter.reserved
        amount = min(_estimate(limit, model=job.model, input_tokens=input_tokens), left)
        counter.reserved += amount
        counter.save(update_fields=["reserved"])
        UsageReservation.objects.create(job=job, counter=counter, amount=amount)
        state = LimitState(limit, counter.used, counter.reserved, counter.window_start, window(limit.period, now)[1])
        if state.ratio >= settings.JOBS_USAGE_WARNING_RATIO:
            warnings.append(state)
    return warnings


def _refuse(state: LimitState, now: datetime) -> None:
    limit = state.limit
    unit = "tokens" if limit.unit == LimitUnit.TOKENS else settings.USAGE_CURRENCY
    body = state.body()
    raise UsageLimitExceeded(
        f"The usage limit {limit.name!r} of role {limit.role.name!r} ({body['amount']} {unit} per {limit.period} "
        f"on {limit.target} matching {limit.pattern!r}) is used up: {body['used']} used and {body['reserved']} "
        f"reserved by running jobs. It resets at {body['resets_at']}.",
        problem_extra={"limit": body},
        wait=math.ceil(max(1.0, (state.resets_at - now).total_seconds())),
    )


def usage_settle(*, job: Job) -> None:
    """Release the ended job's reservations and add what it really used, under the counters' row locks."""
    reservations = list(UsageReservation.objects.filter(job=job).order_by("counter_id"))
    if not reservations:
        return
    counters = {
        c.pk: c
        for c in UsageCounter.objects.select_for_update()
        .select_related("limit")
        .filter(pk__in=[r.counter_id for r in reservations])
        .order_by("pk")
    }
    for reservation in reservations:
        counter = counters[reservation.counter_id]
        actual = Decimal(job.input_tokens + job.output_tokens) if counter.limit.unit == LimitUnit.TOKENS else job.cost
        counter.reserved = max(Decimal(0), counter.reserved - reservation.amount)
        counter.used += actual
        counter.save(update_fields=["reserved", "used"])
    UsageReservation.objects.filter(pk__in=[r.pk for r in reservations]).delete()


def _model_limits(*, tenant: Tenant, user: User, model: str) -> list[UsageLimit]:
    # A passthrough call has no agent: only limits on models apply to it.
    return [
        limit for limit in member_limits(tenant=tenant, user=user) if limit_applies(limit, agent_slug="", model=model)
    ]


@transaction.atomic
def passthrough_admit(*, tenant: Tenant, user: User, model: str) -> None:
    """UsageLimitExceeded when a limit of ``user`` on ``model`` is used up; nothing is reserved (the call is
    synchronous and short: its real usage is added by ``passthrough_record`` as soon as it answered)."""
    limits = _model_limits(tenant=tenant, user=user, model=model)
    if not limits:
        return
    now = timezone.now()
    for limit, counter in _locked_counters(limits, user, now):
        if counter.used + counter.reserved >= limit.amount:
            _refuse(
                LimitState(limit, counter.used, counter.reserved, counter.window_start, window(limit.period, now)[1]),
                now,
            )


@transaction.atomic
def passthrough_record(*, tenant: Tenant, user: User, kind: str, model: str, usage: dict[str, Any]) -> PassthroughCall:
    """Record an answered passthrough call, priced like a job's usage, and add it to the member's counters."""
    body, cost = usage_priced(model=model, usage=usage)
    call = PassthroughCall.objects.create(
        tenant=tenant,
        created_by=user,
        kind=kind,
        model=model,
        input_tokens=body["input_tokens"],
        output_tokens=body["output_tokens"],
        cost=cost,
    )
    limits = _model_limits(tenant=tenant, user=user, model=model)
    if limits:
        # A counter made now starts from what the window used before, this call included: add it only to the
        # counters that existed already.
        now = timezone.now()
        present = set(UsageCounter.objects.filter(limit__in=limits, user=user).values_list("limit_id", "window_start"))
        fresh = {limit.pk for limit in limits if (limit.pk, window(limit.period, now)[0]) not in present}
        for limit, counter in _locked_counters(limits, user, now):
            if limit.pk in fresh:
                continue
            counter.used += (
                Decimal(call.input_tokens + call.output_tokens) if limit.unit == LimitUnit.TOKENS else call.cost
            )
            counter.save(update_fields=["used"])
    return call


def limit_states(*, tenant: Tenant, user: User) -> list[LimitState]:
    """The member's limits with what is used and reserved in their current windows (nothing is written)."""
    now = timezone.now()
    states = []
    for limit in member_limits(tenant=tenant, user=user):
        start, end = window(limit.period, now)
        counter = UsageCounter.objects.filter(limit=limit, user=user, window_start=start).first()
        used = counter.used if counter else _used_before(limit, user, start)
        states.append(LimitState(limit, used, counter.reserved if counter else Decimal(0), start, end))
    return states


# --- Limits: the operators' writes ---------------------------------------------------------------------------


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if "pattern" in fields:
        try:
            validate_pattern(fields["pattern"])
        except ValueError as exc:
            errors["pattern"] = str(exc)
    if "amount" in fields and (fields["amount"] is None or Decimal(fields["amount"]) <= 0):
        errors["amount"] = "A limit must be greater than zero."
    if "period" in fields and fields["period"] not in LimitPeriod.values:
        errors["period"] = f"One of {', '.join(LimitPeriod.values)}."
    if errors:
        raise ValidationError(errors)
    return fields


@transaction.atomic
def usage_limit_create(
    *,
    role: Role,
    name: str,
    amount: Decimal,
    target: str = LimitTarget.AGENTS,
    pattern: str = ">",
    unit: str = LimitUnit.TOKENS,
    period: str = LimitPeriod.DAY,
    enabled: bool = True,
) -> UsageLimit:
    fields = _checked({"pattern": pattern, "amount": amount, "period": period})
    if UsageLimit.objects.filter(role=role, name=name).exists():
        raise ValidationError({"name": f"Role {role.name!r} already has a limit named {name!r}."})
    return UsageLimit.objects.create(role=role, name=name, target=target, unit=unit, enabled=enabled, **fields)


@transaction.atomic
def usage_limit_update(*, limit: UsageLimit, **fields: Any) -> UsageLimit:
    """Change a limit; its counters stay (a new amount applies to what the window has used already)."""
    _checked(fields)
    locked = UsageLimit.objects.select_for_update().get(pk=limit.pk)
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save()
    return locked


def limit_matches_anything(limit: UsageLimit) -> bool:
    """Whether the pattern matches some agent of the role's tenant (or, for models, a catalogue model or a
    model an agent names): a limit that matches nothing is probably a typo, and the admin says so."""
    if limit.target == LimitTarget.AGENTS:
        names: Iterable[str] = Agent.objects.filter(tenant_id=limit.role.tenant_id).values_list("slug", flat=True)
    else:
        names = {
            *CatalogueModel.objects.values_list("model_id", flat=True),
            *Agent.objects.filter(tenant_id=limit.role.tenant_id).values_list("model", flat=True),
        }
    return any(pattern_matches(limit.pattern, name) for name in names if name)


# --- Reports ---------------------------------------------------------------------------------------------------

INTERVALS = ("hour", "day", "month")
GROUPS: dict[str, tuple[str, str]] = {
    # group_by -> (key field, label field); "tenant" is for operators (the admin's spend dashboard).
    "tenant": ("tenant__slug", "tenant__name"),
    "user": ("created_by_id", "created_by__username"),
    "agent": ("agent__slug", "agent__name"),
    "model": ("model", "model"),
}


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    input_tokens, output_tokens = int(row["input_tokens"] or 0), int(row["output_tokens"] or 0)
    return {
        "jobs": int(row["jobs"] or 0),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost": float(round(Decimal(row["cost"] or 0), 10)),
    }


_SUMS = {
    "jobs": Count("id"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost"),
}


_CALL_SUMS = {
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost"),
}
# A passthrough call's group under group_by=agent: it has no agent (agent slugs are never empty).
_NO_AGENT = {"agent__slug": "", "agent__name": "passthrough"}


def _call_rows(calls: QuerySet[PassthroughCall], fields: list[str], *, period: Any = None) -> list[dict[str, Any]]:
    """The passthrough calls' sums as rows shaped like the jobs' (``jobs`` 0: they are not jobs)."""
    own = [name for name in fields if name not in _NO_AGENT]
    if period is not None:
        calls = calls.annotate(period=period)
        own = ["period", *own]
    rows = calls.values(*own).annotate(**_CALL_SUMS).order_by(*own) if own else [calls.aggregate(**_CALL_SUMS)]
    rows = [row for row in rows if row["input_tokens"] is not None]  # an aggregate over no calls
    return [{**{k: v for k, v in _NO_AGENT.items() if k in fields}, **row, "jobs": 0} for row in rows]


def _merged(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        into = merged.setdefault(tuple(row[name] for name in key), {**row, "jobs": 0, **dict.fromkeys(_CALL_SUMS, 0)})
        for name in ("jobs", *_CALL_SUMS):
            into[name] = (into[name] or 0) + (row[name] or 0)
    return list(merged.values())


def _sortable(value: Any) -> tuple[bool, Any]:
    # As SQL orders (the jobs' order before calls joined them): by value, empty (NULL) last.
    return (value is None, value if value is not None else 0)


def usage_report(
    *,
    jobs: QuerySet[Job],
    start: datetime,
    end: datetime,
    interval: str,
    group_by: str | None,
    calls: QuerySet[PassthroughCall] | None = None,
) -> dict[str, Any]:
    """Totals, per-group totals and a time series of ``jobs`` (and passthrough ``calls``) created in [start, end),
    in SQL.

    ``jobs`` and ``calls`` are already narrowed to what the caller may see. Periods are truncated in UTC (Django's
    Trunc, on SQLite and PostgreSQL alike); only periods with usage are listed. Calls add tokens and cost, not jobs.
    """
    jobs = jobs.filter(created_at__gte=start, created_at__lt=end).order_by()
    calls = (calls if calls is not None else PassthroughCall.objects.none()).filter(
        created_at__gte=start, created_at__lt=end
    )
    fields = list(dict.fromkeys(GROUPS[group_by])) if group_by else []
    totals = _totals(_merged([jobs.aggregate(**_SUMS), *_call_rows(calls, [])], ())[0])
    groups = []
    if group_by:
        key_field, label_field = GROUPS[group_by]
        rows = _merged([*jobs.values(*fields).annotate(**_SUMS), *_call_rows(calls, fields)], (key_field,))
        rows.sort(key=lambda row: (-Decimal(row["cost"] or 0), *_sortable(row[key_field])))
        for row in rows:
            groups.append({"key": str(row[key_field]), "label": str(row[label_field] or ""), **_totals(row)})
    series = []
    period = Trunc("created_at", interval, tzinfo=UTC)
    by_period = jobs.annotate(period=period).values("period", *fields).annotate(**_SUMS)
    rows = _merged([*by_period, *_call_rows(calls, fields, period=period)], ("period", *fields))
    rows.sort(key=lambda row: (row["period"], *(part for name in fields for part in _sortable(row[name]))))
    for row in rows:
        point: dict[str, Any] = {"period": row["period"].astimezone(UTC).isoformat().replace("+00:00", "Z")}
        if group_by:
            point["key"] = str(row[GROUPS[group_by][0]])
        series.append({**point, **_totals(row)})
    return {"totals": totals, "groups": groups, "series": series}
