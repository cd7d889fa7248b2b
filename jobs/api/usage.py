"""``GET /api/v1/{tenant}/usage``: usage totals and time series of jobs, and the caller's usage limits;
``GET /api/v1/{tenant}/usage/jobs/`` and ``.../usage/calls/``: the usage record of each ended job and of each
passthrough call, the rows those totals add up.

A member sees their own jobs' usage; with ``aihub.admin.usage`` (the default ``admin`` role) the whole
tenant's, unless they ask for ``scope=mine``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantApiView, TenantScopedViewSet
from aihub.api.pagination import cursor_pagination
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.query import DATETIME_FORMATS, TimeRangeQuerySerializer
from aihub.api.schema import ProblemSerializer
from jobs import selectors, usage
from jobs.models import Job, PassthroughCall

DEFAULT_SPAN = timedelta(days=30)


class _ScopeQuerySerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=["mine", "tenant"],
        required=False,
        help_text="`mine`: your own jobs; `tenant`: everyone's (needs aihub.admin.usage; the default for those "
        "who have it).",
    )


class UsageQuerySerializer(_ScopeQuerySerializer):
    interval = serializers.ChoiceField(
        choices=usage.INTERVALS, default="day", help_text="The time series' step (periods in UTC)."
    )
    group_by = serializers.ChoiceField(
        choices=["user", "agent", "model"], required=False, help_text="Split totals and series by user, agent or model."
    )
    # "from" is a keyword: declared under another name and renamed in get_fields.
    from_ = serializers.DateTimeField(
        required=False, input_formats=DATETIME_FORMATS, help_text="Start (inclusive); default 30 days before `to`."
    )
    to = serializers.DateTimeField(required=False, input_formats=DATETIME_FORMATS, help_text="End (exclusive); now.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - DEFAULT_SPAN
        if start >= end:
            raise serializers.ValidationError({"from": "Must be before `to`."})
        attrs["from"], attrs["to"] = start, end
        return attrs


class UsageTotalsSerializer(serializers.Serializer):
    jobs = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.FloatField()


class UsageGroupSerializer(UsageTotalsSerializer):
    key = serializers.CharField(help_text="User id, agent slug or model id.")

    def get_fields(self) -> dict[str, serializers.Field]:
        # "label" would shadow the Field attribute of that name if declared on the class.
        fields = super().get_fields()
        fields["label"] = serializers.CharField(help_text="Username, agent name or model id.")
        return fields


class UsagePointSerializer(UsageTotalsSerializer):
    period = serializers.DateTimeField(help_text="Start of the period (UTC).")
    key = serializers.CharField(required=False, help_text="The group, with group_by.")


class UsageLimitStateSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.CharField()
    target = serializers.CharField()
    pattern = serializers.CharField()
    unit = serializers.CharField()
    amount = serializers.FloatField()
    period = serializers.CharField()
    used = serializers.FloatField()
    reserved = serializers.FloatField(help_text="Held by jobs that are still running.")
    window_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField()


class UsageReportSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["mine", "tenant"])
    interval = serializers.CharField()
    group_by = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    totals = UsageTotalsSerializer()
    groups = UsageGroupSerializer(many=True)
    series = UsagePointSerializer(many=True)
    limits = UsageLimitStateSerializer(many=True, help_text="Your usage limits in their current windows.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        fields["to"] = serializers.DateTimeField()
        return fields


_TOTALS = {"jobs": 3, "input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500, "cost": 0.0048}
USAGE_EXAMPLE = {
    "scope": "tenant",
    "from": "2026-11-24T00:00:00Z",
    "to": "2026-11-26T00:00:00Z",
    "interval": "day",
    "group_by": "agent",
    "currency": "USD",
    "totals": _TOTALS,
    "groups": [{"key": "assistant", "label": "Assistant", **_TOTALS}],
    "series": [
        {"period": "2026-11-24T00:00:00Z", "key": "assistant", **_TOTALS, "jobs": 1, "total_tokens": 500},
        {"period": "2026-11-25T00:00:00Z", "key": "assistant", **_TOTALS, "jobs": 2, "total_tokens": 1000},
    ],
    "limits": [
        {
            "id": "5f0c6a4e-0d7b-4a59-9a43-0c1f1f7f3b11",
            "name": "daily-tokens",
            "role": "member",
            "target": "agents",
            "pattern": ">",
            "unit": "tokens",
            "amount": 100000,
            "period": "1d",
            "used": 1000,
            "reserved": 0,
            "window_start": "2026-11-25T00:00:00Z",
            "resets_at": "2026-11-26T00:00:00Z",
        }
    ],
}


@extend_schema(parameters=[TENANT_PARAMETER], tags=["usage"])
class UsageView(TenantApiView):
    @extend_schema(
        summary="Usage totals and time series",
        description="Tokens and cost of jobs created in [`from`, `to`), in total, per group and per period. A "
        "member sees their own jobs; with `aihub.admin.usage`, the tenant's.",
        parameters=[UsageQuerySerializer],
        responses={
            200: OpenApiResponse(UsageReportSerializer, examples=[OpenApiExample("By agent", USAGE_EXAMPLE)]),
            (403, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer, description="`scope=tenant` without aihub.admin.usage."
            ),
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        principal = self.principal
        scope = selectors.usage_scope(principal=principal, asked=params.get("scope"))
        jobs, calls = selectors.usage_sources(principal=principal, scope=scope)
        report = usage.usage_report(
            jobs=jobs,
            calls=calls,
            start=params["from"],
            end=params["to"],
            interval=params["interval"],
            group_by=params.get("group_by"),
        )
        return Response(
            {
                "scope": scope,
                "from": params["from"],
                "to": params["to"],
                "interval": params["interval"],
                "group_by": params.get("group_by"),
                "currency": settings.USAGE_CURRENCY,
                **report,
                "limits": [state.body() for state in usage.limit_states(tenant=principal.tenant, user=principal.user)],
            }
        )


USAGE_RECORD_EXAMPLE = {
    "job": "9a1b2c3d-1111-4e5f-8a9b-0c1d2e3f4a5b",
    "thread": "7c6b5a49-2222-4d3e-9f8a-1b2c3d4e5f60",
    "agent": "assistant",
    "agent_version": 3,
    "user": "alice",
    "status": "succeeded",
    "model": "offline/echo",
    "input_tokens": 412,
    "output_tokens": 96,
    "total_tokens": 508,
    "cost": 0.0016,
    "currency": "USD",
    "created_at": "2026-11-25T09:30:00Z",
    "finished_at": "2026-11-25T09:30:02.250000Z",
}


PASSTHROUGH_CALL_EXAMPLE = {
    "id": 812,
    "kind": "images",
    "model": "openai/gpt-image-1",
    "user": "alice",
    "input_tokens": 40,
    "output_tokens": 4160,
    "total_tokens": 4200,
    "cost": 0.1664,
    "currency": "USD",
    "created_at": "2026-11-25T09:31:00Z",
}


class _AccountedSerializer(serializers.ModelSerializer):
    """What every usage record says: who, how many tokens, what they cost."""

    user = serializers.SerializerMethodField(help_text="Who it was for; null once that user is deleted, or for none.")
    total_tokens = serializers.SerializerMethodField()
    cost = serializers.FloatField(help_text="At the catalogue's prices when it was accounted.")
    currency = serializers.SerializerMethodField()

    def get_user(self, row: Job | PassthroughCall) -> str | None:
        return row.created_by.get_username() if row.created_by is not None else None

    def get_total_tokens(self, row: Job | PassthroughCall) -> int:
        return row.input_tokens + row.output_tokens

    def get_currency(self, row: Job | PassthroughCall) -> str:
        return str(settings.USAGE_CURRENCY)


@extend_schema_serializer(examples=[OpenApiExample("An ended job's usage", value=USAGE_RECORD_EXAMPLE)])
class UsageRecordSerializer(_AccountedSerializer):
    """An ended job's usage, as accounted when it ended."""

    job = serializers.UUIDField(source="id", help_text="The job.")
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = Job
        fields = [
            "job",
            "thread",
            "agent",
            "agent_version",
            "user",
            "status",
            "model",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cost",
            "currency",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema_serializer(examples=[OpenApiExample("An image generated", value=PASSTHROUGH_CALL_EXAMPLE)])
class PassthroughCallSerializer(_AccountedSerializer):
    """A call passed through to a provider model without an agent (images, audio), as accounted."""

    class Meta:
        model = PassthroughCall
        fields = [
            "id",
            "kind",
            "model",
            "user",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cost",
            "currency",
            "created_at",
        ]
        read_only_fields = fields


class UsageRecordQuerySerializer(_ScopeQuerySerializer, TimeRangeQuerySerializer):
    agent = serializers.SlugField(required=False, help_text="Only jobs of this agent (slug).")
    model = serializers.CharField(required=False, max_length=300, help_text="Only jobs on this model id.")


class PassthroughCallQuerySerializer(_ScopeQuerySerializer, TimeRangeQuerySerializer):
    kind = serializers.ChoiceField(choices=PassthroughCall.Kind.choices, required=False, help_text="Only these calls.")
    model = serializers.CharField(required=False, max_length=300, help_text="Only calls to this model id.")


class _UsageListViewSet(TenantScopedViewSet):
    """A list of usage records: the caller's own, or with aihub.admin.usage the tenant's (``scope``)."""

    query_serializer: type[serializers.Serializer]
    # The selector of the records: (principal=, scope=, **filters of query_serializer) -> queryset.
    records: Callable[..., QuerySet[Any]]

    def visible_queryset(self) -> Any:
        return self.records(principal=self.principal, scope="mine")

    def list(self, request: Request, tenant: str) -> Response:
        query = self.query_serializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        scope = selectors.usage_scope(principal=self.principal, asked=filters.pop("scope", None))
        page = self.paginate_queryset(self.records(principal=self.principal, scope=scope, **filters))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def _usage_list_schema(*, summary: str, description: str) -> Callable[[type[_UsageListViewSet]], Any]:
    """The OpenAPI description of a usage list: its query and items from the view, the 403 of ``scope=tenant``."""

    def describe(view: type[_UsageListViewSet]) -> Any:
        items = view.serializer_class
        assert items is not None, "a usage list names the serializer of its items"
        listing = extend_schema(
            summary=summary,
            description=f"{description} A member sees their own; with `aihub.admin.usage`, the tenant's.",
            parameters=[view.query_serializer],
            responses={
                200: items(many=True),
                (403, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                    ProblemSerializer, description="`scope=tenant` without aihub.admin.usage."
                ),
            },
        )
        return extend_schema(parameters=[TENANT_PARAMETER], tags=["usage"])(extend_schema_view(list=listing)(view))

    return describe


@_usage_list_schema(
    summary="Usage records of ended jobs, the latest end first",
    description="One record per ended job, with the tokens and cost it was accounted when it ended; by "
    "`finished_at`, which `since` and `until` filter too (the report's `from` and `to` are on `created_at`). "
    "Calls passed through to provider models (images, audio) are at `usage/calls/`.",
)
class UsageRecordViewSet(_UsageListViewSet):
    """The usage record of each ended job: its tokens and cost, the rows the usage report adds up."""

    serializer_class = UsageRecordSerializer
    model = Job
    query_serializer = UsageRecordQuerySerializer
    records = staticmethod(selectors.usage_record_list)
    # Every job that ends adds a record: the list pages by cursor too, by when the job ended.
    pagination_class = cursor_pagination("-finished_at", "id")


@_usage_list_schema(
    summary="Usage records of passthrough calls, newest first",
    description="Image generations, transcriptions and speech passed through to provider models without an "
    "agent, each with its tokens and cost; `since` and `until` on `created_at`.",
)
class PassthroughCallViewSet(_UsageListViewSet):
    """The usage record of each passthrough call: images, transcriptions and speech, without an agent."""

    serializer_class = PassthroughCallSerializer
    model = PassthroughCall
    query_serializer = PassthroughCallQuerySerializer
    records = staticmethod(selectors.usage_call_list)
    pagination_class = cursor_pagination("-created_at", "-id")
