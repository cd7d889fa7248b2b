"""Images and audio through the OpenAI-compatible front door, passed through to a provider model that offers them.

- ``POST images/generations`` (JSON, ``prompt``), to a catalogue model of type ``image``;
- ``POST audio/transcriptions`` (multipart, ``file`` of at most ``TRANSCRIPTION_MAX_BYTES``), type ``audio``;
- ``POST audio/speech`` (JSON, ``input``), type ``audio``; the answer is the provider's audio bytes.

The ``model`` is a catalogue model id (``<provider>/<model>``, as ``GET /api/v1/{tenant}/models`` lists it) of an
enabled, configured provider: requests go only to the providers operators configured, never to a URL a caller
names. Using it takes ``aihub.user.models`` in the caller's default tenant. The other fields are the provider's
(size, voice, response_format, ...) and pass through unchanged, as does the provider's answer (body and content
type). A provider's refusal (a 4xx) is a 400 with its words; its failures are 502/504/429, in OpenAI's shape.

**Accounting.** Each answered call is a ``jobs.PassthroughCall`` of the caller's default tenant: the tokens of
the provider's ``usage`` (image and ``gpt-4o-*-transcribe`` answers carry it; ``whisper-1`` and speech do not),
priced at the catalogue's prices. Usage reports count them (tokens and cost, not jobs), and a member's limits on
models (``target: models``) admit and count them; limits on agents do not apply, as there is no agent.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

from django.http import Http404, HttpResponse, QueryDict
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request

from agents.api.catalogue import MODELS_RESOURCE
from agents.catalogue import catalogue_refresh_due, model_get
from agents.models import CatalogueModel, ModelType, ProviderKind
from agents.providers.base import ProviderError
from aihub.api.base import caller
from aihub.api.parsers import JSONParser
from aihub.interop.agents import default_principal
from aihub.interop.openai_api import OpenAIError, OpenAIView, _invalid, _requested_model
from jobs.models import PassthroughCall
from jobs.usage import UsageLimitExceeded, passthrough_admit, passthrough_record

TRANSCRIPTION_MAX_BYTES = 25 * 1024 * 1024
"""OpenAI's own limit on an audio file to transcribe."""

_KINDS: dict[str, tuple[str, str]] = {
    PassthroughCall.Kind.IMAGES: (ModelType.IMAGE, "image generation"),
    PassthroughCall.Kind.TRANSCRIPTIONS: (ModelType.AUDIO, "audio transcription"),
    PassthroughCall.Kind.SPEECH: (ModelType.AUDIO, "speech synthesis"),
}


def _usage_of(content: bytes, content_type: str) -> dict[str, Any]:
    """The token counts of a provider's JSON answer (``usage.input_tokens`` / ``output_tokens``), else none."""
    if "json" not in content_type:
        return {}
    try:
        usage = json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(usage, dict):
        return {}
    return {key: usage[key] for key in ("input_tokens", "output_tokens") if isinstance(usage.get(key), int)}


def _provider_error(exc: ProviderError) -> OpenAIError:
    if exc.status == 400:
        return OpenAIError(exc.detail, status=400, code="provider_refused")
    if exc.status == 429:
        return OpenAIError(exc.detail, status=429, type="requests", code="rate_limit_exceeded")
    if exc.status == 504:
        return OpenAIError(exc.detail, status=504, type="timeout", code="provider_timeout")
    return OpenAIError(exc.detail, status=502, type="server_error", code="upstream_error")


class PassthroughView(OpenAIView):
    kind: str = ""
    path: str = ""

    def catalogue_model(self, request: Request) -> tuple[Any, CatalogueModel]:
        """The caller's default principal and the catalogue model the request names, checked for this route."""
        model_id = _requested_model(request.data)
        not_found = OpenAIError(
            f"The model `{model_id}` does not exist or you do not have access to it.",
            status=404,
            param="model",
            code="model_not_found",
        )
        try:
            principal = default_principal(user=caller(request), auth=request.auth)
        except Http404 as exc:
            raise not_found from exc
        principal.require("user", MODELS_RESOURCE)
        catalogue_refresh_due()  # as a catalogue read: the built-ins exist, lists older than their TTL are asked
        row = model_get(model_id=model_id)
        if row is None:
            raise not_found
        wanted, what = _KINDS[self.kind]
        if row.type != wanted or row.provider is None or row.provider.kind != ProviderKind.OPENAI:
            raise OpenAIError(
                f"The model `{model_id}` does not offer {what}.", param="model", code="model_not_supported"
            )
        return principal, row

    def fields(self, request: Request) -> tuple[dict[str, Any], tuple[str, bytes, str] | None]:
        raise NotImplementedError

    def post(self, request: Request) -> HttpResponse:
        principal, row = self.catalogue_model(request)
        body, file = self.fields(request)
        try:
            passthrough_admit(tenant=principal.tenant, user=principal.user, model=row.model_id)
        except UsageLimitExceeded as exc:
            wait = exc.wait or 1
            raise OpenAIError(
                str(exc.detail),
                status=429,
                type="insufficient_quota",
                code="usage_limit_exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            ) from exc
        from agents.providers.openai import OpenAIProvider

        try:
            assert row.provider is not None  # catalogue_model made sure
            provider = OpenAIProvider.from_row(row.provider)
            content, content_type = provider.passthrough(self.path, body={**body, "model": row.name}, file=file)
        except ProviderError as exc:
            raise _provider_error(exc) from exc
        passthrough_record(
            tenant=principal.tenant,
            user=principal.user,
            kind=self.kind,
            model=row.model_id,
            usage=_usage_of(content, content_type),
        )
        return HttpResponse(content, content_type=content_type)


def _json_fields(request: Request, required: str) -> dict[str, Any]:
    data = request.data
    value = data.get(required)
    if value is None:
        raise _invalid(f"Missing required parameter: '{required}'.", required, "missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise _invalid(f"'{required}' must be a non-empty string.", required)
    return {key: item for key, item in data.items() if key != "model"}


class ImageGenerationsView(PassthroughView):
    kind = PassthroughCall.Kind.IMAGES
    path = "/images/generations"
    parser_classes = [JSONParser]

    def fields(self, request: Request) -> tuple[dict[str, Any], tuple[str, bytes, str] | None]:
        return _json_fields(request, "prompt"), None


class SpeechView(PassthroughView):
    kind = PassthroughCall.Kind.SPEECH
    path = "/audio/speech"
    parser_classes = [JSONParser]

    def fields(self, request: Request) -> tuple[dict[str, Any], tuple[str, bytes, str] | None]:
        return _json_fields(request, "input"), None


class TranscriptionsView(PassthroughView):
    kind = PassthroughCall.Kind.TRANSCRIPTIONS
    path = "/audio/transcriptions"
    parser_classes = [MultiPartParser, FormParser]

    def fields(self, request: Request) -> tuple[dict[str, Any], tuple[str, bytes, str] | None]:
        upload = request.FILES.get("file")
        if upload is None:
            raise _invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if upload.size is not None and upload.size > TRANSCRIPTION_MAX_BYTES:
            raise OpenAIError(
                f"The audio file is {upload.size} bytes; at most {TRANSCRIPTION_MAX_BYTES} bytes are accepted.",
                status=413,
                param="file",
                code="file_too_large",
            )
        body: dict[str, Any] = {}
        form = cast(QueryDict, request.data)
        for key in form:
            if key in ("model", "file"):
                continue
            values = form.getlist(key)
            # The SDK sends arrays as `name[]`; it adds the brackets again when it sends them on.
            name = key.removesuffix("[]")
            body[name] = values if key.endswith("[]") or len(values) > 1 else values[0]
        file = (upload.name or "audio", upload.read(), upload.content_type or "application/octet-stream")
        return body, file


images_view = ImageGenerationsView.as_view()
transcriptions_view = TranscriptionsView.as_view()
speech_view = SpeechView.as_view()
