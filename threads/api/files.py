"""Files under /api/v1/{tenant}/files/: upload (multipart), list, get, delete, download. Thin: parse, call one
service or selector, render.

Files are what messages attach, so they share the permission resource ``threads``: with aihub.user.threads a
caller uploads files and sees its own; with aihub.admin.threads it sees (and may delete) every file of the tenant.
A file the caller may not see is a 404.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.api.serializers import StrictSerializer
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantScopedViewSet, caller
from aihub.api.problems import PROBLEM_CONTENT_TYPE, PayloadTooLarge
from aihub.api.schema import ProblemSerializer
from aihub.conf import aihub_settings
from threads import selectors, services
from threads.api.serializers import UserRefSerializer
from threads.models import File

FILE_ID_PARAMETER = OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH, description="The file's id.")
FILE_EXAMPLE_ID = "5b0e4c52-9d0a-4c6e-8f43-3f3b8f7e2a10"


def file_content_url(file: File) -> str:
    return reverse("file-content", kwargs={"tenant": file.tenant.slug, "pk": file.pk})


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A file",
            value={
                "id": FILE_EXAMPLE_ID,
                "name": "invoice-1042.pdf",
                "media_type": "application/pdf",
                "size": 48213,
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "has_text": True,
                "source_url": "",
                "uploaded_by": {"id": 7, "username": "ada"},
                "created_at": "2025-01-01T12:00:00Z",
                "url": f"/api/v1/acme/files/{FILE_EXAMPLE_ID}/content",
            },
            response_only=True,
        )
    ]
)
class FileSerializer(serializers.ModelSerializer):
    uploaded_by = UserRefSerializer(read_only=True, allow_null=True)
    media_type = serializers.CharField(read_only=True, help_text="Sniffed from the bytes, not the client's word.")
    has_text = serializers.SerializerMethodField(help_text="Whether text was extracted (documents; not images).")
    source_url = serializers.CharField(read_only=True, help_text="The file_urls entry it was fetched from, if any.")
    url = serializers.SerializerMethodField(help_text="Where the file downloads.")

    class Meta:
        model = File
        fields = [
            "id",
            "name",
            "media_type",
            "size",
            "sha256",
            "has_text",
            "source_url",
            "uploaded_by",
            "created_at",
            "url",
        ]
        read_only_fields = fields

    def get_has_text(self, file: File) -> bool:
        return file.text is not None

    def get_url(self, file: File) -> str:
        return file_content_url(file)


class FileUploadSerializer(StrictSerializer):
    file = serializers.FileField(help_text="The file (multipart/form-data).")
    name = serializers.CharField(
        max_length=services.FILE_NAME_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="The name to show; the uploaded file's own name when absent.",
    )


class _SizeLimit(FileUploadHandler):
    """Stops an upload as soon as it passes FILE_MAX_BYTES, before it fills a temporary file."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        limit = int(aihub_settings.FILE_MAX_BYTES)
        if start + len(raw_data) > limit:
            raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _download_name(name: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f/\\]", "_", name).strip(". ") or "file"


_PROBLEMS = {
    (413, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description="The file is larger than allowed."),
    (415, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer, description="The file's type (sniffed from its bytes) is not accepted."
    ),
}


@extend_schema(parameters=[TENANT_PARAMETER], tags=["files"])
class FileViewSet(TenantScopedViewSet):
    """Files to attach to messages: uploaded here, or fetched from a message's file_urls."""

    serializer_class = FileSerializer
    model = File
    parser_classes = [MultiPartParser]

    def visible_queryset(self) -> Any:
        return selectors.file_list(principal=self.principal)

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        # Ahead of Django's own handlers: the limit applies while the body streams in.
        request.upload_handlers.insert(0, _SizeLimit(request))
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(summary="The caller's files (every file of the tenant for threads admins), newest first")
    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(FileSerializer(page, many=True).data)

    @extend_schema(
        summary="Upload a file",
        description="multipart/form-data with `file` (and optionally `name`). The type is sniffed from the bytes "
        "(PDF, Word, PNG, JPEG, GIF, WebP by their signature; text by extension); text is extracted from documents "
        'once, here. Attach the file to a message with `attachments: [{"file": id}]`.',
        request={"multipart/form-data": FileUploadSerializer},
        responses={201: FileSerializer, **_PROBLEMS},
    )
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", "threads")
        body = FileUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        file = services.file_create(
            tenant=self.principal.tenant,
            uploaded_by=caller(request),
            name=body.validated_data.get("name") or upload.name or "file",
            data=upload.read(),
            declared_type=upload.content_type or "",
        )
        return Response(FileSerializer(file).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[FILE_ID_PARAMETER], summary="A file's details")
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(FileSerializer(self.get_object()).data)

    @extend_schema(
        parameters=[FILE_ID_PARAMETER],
        responses={204: None},
        summary="Delete a file (its uploader or a threads admin)",
        description="Messages that attached it keep the reference; models are told the file is gone.",
    )
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        services.file_delete(file=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[FILE_ID_PARAMETER],
        summary="Download a file",
        description="The bytes as uploaded, always as an attachment (never rendered by the browser).",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file, with its sniffed media type, as an attachment."
            ),
            (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description="No such file."),
        },
    )
    def content(self, request: Request, tenant: str, pk: str) -> FileResponse:
        file = self.get_object()
        response = FileResponse(file.content.open("rb"), as_attachment=True, filename=_download_name(file.name))
        response["Content-Type"] = file.media_type
        # An uploaded HTML or SVG page must never run as this origin's page.
        response["Content-Security-Policy"] = "sandbox"
        return response
