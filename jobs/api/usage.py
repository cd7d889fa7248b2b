"""``GET /api/v1/{tenant}/usage``: usage totals and time series of jobs, and the caller's usage limits.

A member sees their own jobs' usage; with ``aihub.admin.usage`` (the default ``admin`` role) the whole
tenant's, unless they ask for ``scope=mine``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.api.views import TENANT_PARAMETER
from aihub.access.rules import Level
from aihub.api.base import TenantApiView
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer
from jobs import usage
from jobs.models import Job, PassthroughCall

USAGE_RESOURCE = "usage"
DEFAULT_SPAN = timedelta(days=30)
DATETIME_FORMATS = ["iso-8601", "%Y-%m-%d"]


class UsageQuerySerializer(serializers.Serializer):
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
    scope = serializers.ChoiceField(
        choices=["mine", "tenant"],
        required=False,
        help_text="`mine`: your own jobs; `tenant`: everyone's (needs aihub.admin.usage; the default for those "
        "who have it).",
    )

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
        tenant_wide = principal.can(Level.ADMIN, USAGE_RESOURCE)
        scope = params.get("scope") or ("tenant" if tenant_wide else "mine")
        if scope == "tenant" and not tenant_wide:
            raise PermissionDenied("Seeing the tenant's usage takes aihub.admin.usage; you see your own.")
        jobs = Job.objects.filter(tenant=principal.tenant)
        calls = PassthroughCall.objects.filter(tenant=principal.tenant)
        if scope == "mine":
            jobs = jobs.filter(created_by=principal.user)
            calls = calls.filter(created_by=principal.user)
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
