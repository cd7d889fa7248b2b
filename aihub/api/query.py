"""Query parameters lists share: a time range, ``since`` (inclusive) to ``until`` (exclusive)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from rest_framework import serializers

_M = TypeVar("_M", bound=Model)

DATETIME_FORMATS = ["iso-8601", "%Y-%m-%d"]
"""What a time in a query parameter may look like: ISO 8601, or a date (its midnight, UTC)."""


class TimeRangeQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        required=False, input_formats=DATETIME_FORMATS, help_text="From this time on (inclusive); ISO 8601 or a date."
    )
    until = serializers.DateTimeField(
        required=False, input_formats=DATETIME_FORMATS, help_text="Before this time (exclusive); ISO 8601 or a date."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": "Must be after `since`."})
        return attrs


def in_time_range(queryset: QuerySet[_M], field: str, *, since: Any = None, until: Any = None) -> QuerySet[_M]:
    """``queryset`` narrowed to rows whose ``field`` is in [since, until); either end may be open."""
    if since is not None:
        queryset = queryset.filter(**{f"{field}__gte": since})
    if until is not None:
        queryset = queryset.filter(**{f"{field}__lt": until})
    return queryset
