"""The list envelope of every collection: ``{"items", "total", "limit", "offset"}``, limit capped."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from aihub.conf import aihub_settings


class EnvelopePagination(LimitOffsetPagination):
    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return int(aihub_settings.PAGE_SIZE)

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(aihub_settings.MAX_PAGE_SIZE)

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"items": data, "total": self.count, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "total", "limit", "offset"],
            "properties": {
                "items": schema,
                "total": {"type": "integer", "example": 123},
                "limit": {"type": "integer", "example": self.default_limit},
                "offset": {"type": "integer", "example": 0},
            },
        }
