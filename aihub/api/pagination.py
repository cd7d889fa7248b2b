"""The list envelopes: ``{"items", "total", "limit", "offset"}`` by offset, and for the lists that grow without
bound (messages, jobs, documents, a thread's events) ``{"items", "limit", "next", "previous"}`` by cursor.

The limit is capped at ``MAX_PAGE_SIZE`` (1000): a larger one is clamped to it, a nonsense one (0, negative, not a
number) falls back to ``PAGE_SIZE``, in both modes.

A cursor walk starts with ``?cursor=`` (empty) and follows ``next``. Its position is the last row's value of a
key assigned in insertion order (a thread's event sequence, or ``created_at`` with DRF's offset for ties), so rows
inserted during the walk never make it skip or repeat one: in an oldest-first list they turn up on later pages;
in a newest-first one they are ahead of the walk, and the first page's ``previous`` link fetches them.
Cursor pages carry no ``total``: counting a large, growing list on every page is the cost cursors avoid.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination, LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.conf import aihub_settings

CURSOR_PARAMETER = "cursor"
LIMIT_DESCRIPTION = "Items per page, at most {max} (a larger limit is clamped to it); default {default}."
CURSOR_DESCRIPTION = (
    "Page by cursor instead of offset: empty for the first page, then the `next` (or `previous`) link's value. "
    "Stable while rows are added; the page has `next` and `previous` links and no `total`."
)
INVALID_CURSOR = "Not a cursor of this list; start with an empty one."
NEXT_EXAMPLE = "https://aihub.example.com/api/v1/acme/jobs/?cursor=cD0yMDI1LTAxLTAxKzEyJTNBMDA%3D&limit=2"


def _limits() -> tuple[int, int]:
    return int(aihub_settings.PAGE_SIZE), int(aihub_settings.MAX_PAGE_SIZE)


def offset_page_schema(items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": items,
            "total": {"type": "integer", "example": 123},
            "limit": {"type": "integer", "example": _limits()[0]},
            "offset": {"type": "integer", "example": 0},
        },
    }


def cursor_page_schema(items: dict[str, Any]) -> dict[str, Any]:
    link = {"type": "string", "format": "uri", "nullable": True}
    return {
        "type": "object",
        "required": ["items", "limit", "next", "previous"],
        "properties": {
            "items": items,
            "limit": {"type": "integer", "example": 2},
            "next": {**link, "example": NEXT_EXAMPLE, "description": "The next page; null on the last one."},
            "previous": {
                **link,
                "example": None,
                "description": "The page before; on the first page of a newest-first list, the rows added since "
                "(null on the first page of an oldest-first one).",
            },
        },
        "example": {"items": [], "limit": 2, "next": NEXT_EXAMPLE, "previous": None},
    }


class EnvelopePagination(LimitOffsetPagination):
    """Offset pages: ``?limit=&offset=``, with the total count."""

    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return _limits()[0]

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return _limits()[1]

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"items": data, "total": self.count, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return offset_page_schema(schema)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        default, most = _limits()
        parameters[0]["description"] = LIMIT_DESCRIPTION.format(max=most, default=default)
        return parameters


class CursorEnvelopePagination(CursorPagination):
    """DRF's cursor pagination in the API's envelope, over ``ordering`` (its first field is the position)."""

    cursor_query_param = CURSOR_PARAMETER
    page_size_query_param = "limit"

    def __init__(self, ordering: tuple[str, ...]) -> None:
        self.ordering = ordering
        self.page_size, self.max_page_size = _limits()

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        self._check_position(queryset, request)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound:
            # A cursor is a query parameter like any other: one this API did not give out is a 400, not a 404.
            raise ValidationError({CURSOR_PARAMETER: INVALID_CURSOR}) from None

    def _check_position(self, queryset: QuerySet[Any], request: Request) -> None:
        # The position is compared with a column: one that is not a value of it (a forged cursor, a NUL byte)
        # must be a 400 before it reaches the database, which would fail the query.
        cursor = self.decode_cursor(request)
        if cursor is None or cursor.position is None:
            return
        field = queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
        try:
            field.to_python(cursor.position)
        except (ValidationError, ValueError, TypeError):
            raise ValidationError({CURSOR_PARAMETER: INVALID_CURSOR}) from None

    def get_previous_link(self) -> str | None:
        link: str | None = super().get_previous_link()
        if link is not None or not self.ordering[0].startswith("-"):
            return link
        # The head of a newest-first list: rows added later are ahead of it, so its `previous` fetches them (and,
        # while there are none, stays where it is), and a client polling it sees every new row once.
        if self.page:
            position = self._get_position_from_instance(self.page[0], self.ordering)
            return str(self.encode_cursor(Cursor(offset=0, reverse=True, position=position)))  # type: ignore[arg-type]
        if self.cursor is not None and self.cursor.reverse:
            return str(self.encode_cursor(self.cursor))
        return None

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"items": data, "limit": self.page_size, "next": self.get_next_link(), "previous": self.get_previous_link()}
        )


class CursorOrOffsetPagination(EnvelopePagination):
    """Offset pages as everywhere, or cursor pages over ``ordering`` when the request has ``cursor``.

    Views name their ordering with :func:`cursor_pagination`."""

    ordering: ClassVar[tuple[str, ...]] = ()
    cursor: CursorEnvelopePagination | None = None

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        if CURSOR_PARAMETER in request.query_params:
            self.cursor = CursorEnvelopePagination(self.ordering)
            return self.cursor.paginate_queryset(queryset, request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data: Any) -> Response:
        if self.cursor is not None:
            return self.cursor.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(schema, dict):
            # drf-spectacular builds a list's examples by walking this schema's properties with a stand-in for
            # the items: they show the default, offset page (the cursor page has an example of its own).
            return offset_page_schema(schema)
        return {"oneOf": [offset_page_schema(schema), cursor_page_schema(schema)]}

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        cursor = {
            "name": CURSOR_PARAMETER,
            "required": False,
            "in": "query",
            "description": CURSOR_DESCRIPTION,
            "schema": {"type": "string"},
            "allowEmptyValue": True,
        }
        return [*super().get_schema_operation_parameters(view), cursor]


def cursor_pagination(*ordering: str) -> type[CursorOrOffsetPagination]:
    """The pagination class of a growing list: offset, or cursor over ``ordering`` — a key assigned in insertion
    order first (``created_at``, a sequence), then a unique one to break ties."""
    return type("CursorOrOffsetPagination", (CursorOrOffsetPagination,), {"ordering": ordering})
