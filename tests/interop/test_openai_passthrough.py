"""Images and audio passed through /openai/v1/ to a provider model that offers them: what reaches the provider,
what comes back, OpenAI-shaped errors, and the usage accounting (reports and limits on models)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from agents.models import CatalogueModel, ModelProvider, ModelType, ProviderKind
from aihub.access.models import Membership, Role
from aihub.interop import passthrough
from jobs import usage
from jobs.models import LimitTarget, PassthroughCall
from tests.agents.openai_server import IMAGE_BYTES, SPEECH_BYTES, OpenAIServer
from tests.helpers import ClientAs
from tests.interop.test_openai_api import assert_openai_error

pytestmark = pytest.mark.django_db

IMAGES = "/openai/v1/images/generations"
TRANSCRIPTIONS = "/openai/v1/audio/transcriptions"
SPEECH = "/openai/v1/audio/speech"


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def provider(openai_server: OpenAIServer) -> ModelProvider:
    return ModelProvider.objects.create(
        name="loopback",
        kind=ProviderKind.OPENAI,
        base_url=openai_server.base_url,
        api_key="sk-loopback-test-key",
        timeout_seconds=2.0,
        max_retries=0,
    )


def offer(provider: ModelProvider, name: str, type: str, **fields: Any) -> CatalogueModel:
    return CatalogueModel.objects.create(
        model_id=f"{provider.name}/{name}",
        provider=provider,
        provider_name=provider.name,
        name=name,
        type=type,
        **fields,
    )


@pytest.fixture
def models(provider: ModelProvider) -> None:
    offer(
        provider,
        "gpt-image-1",
        ModelType.IMAGE,
        input_price_per_million=Decimal(5),
        output_price_per_million=Decimal(40),
    )
    offer(provider, "gpt-4o-transcribe", ModelType.AUDIO)
    offer(provider, "tts-1", ModelType.AUDIO)
    offer(provider, "gpt-4o", ModelType.CHAT)


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> APIClient:
    return client_as(membership)


def posts(server: OpenAIServer) -> list[str]:
    """What reached the provider (the catalogue also asks for its model list, with a GET)."""
    return [request.path for request in server.requests if request.method == "POST"]


def audio_file(size: int = 64) -> SimpleUploadedFile:
    return SimpleUploadedFile("hello.wav", b"RIFF" + b"\0" * (size - 4), content_type="audio/wav")


def test_an_image_is_generated_by_the_provider_model_and_accounted(
    client: APIClient, membership: Membership, openai_server: OpenAIServer, models: None
) -> None:
    response = client.post(IMAGES, {"model": "loopback/gpt-image-1", "prompt": "a cat", "size": "1024x1024"}, "json")

    assert response.status_code == 200, response.content
    assert base64.b64decode(response.json()["data"][0]["b64_json"]) == IMAGE_BYTES
    sent = openai_server.requests[-1]
    assert sent.path == "/v1/images/generations"
    assert sent.body == {"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1024"}
    call = PassthroughCall.objects.get()
    assert (call.kind, call.model, call.tenant, call.created_by) == (
        "images",
        "loopback/gpt-image-1",
        membership.tenant,
        membership.user,
    )
    assert (call.input_tokens, call.output_tokens) == (12, 34)
    assert call.cost == Decimal(12 * 5 + 34 * 40) / Decimal(1_000_000)


def test_a_transcription_sends_the_file_as_multipart_and_returns_the_text(
    client: APIClient, openai_server: OpenAIServer, models: None
) -> None:
    body = {"model": "loopback/gpt-4o-transcribe", "file": audio_file(), "language": "en"}
    response = client.post(TRANSCRIPTIONS, body, format="multipart")

    assert response.status_code == 200, response.content
    assert response.json()["text"].startswith("loopback heard")
    sent = openai_server.requests[-1]
    raw = sent.body["unparsed"]
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert 'filename="hello.wav"' in raw and 'name="language"' in raw and "gpt-4o-transcribe" in raw
    assert PassthroughCall.objects.get().input_tokens == 5


def test_a_text_transcription_passes_through_as_text(client: APIClient, models: None) -> None:
    body = {"model": "loopback/gpt-4o-transcribe", "file": audio_file(), "response_format": "text"}
    response = client.post(TRANSCRIPTIONS, body, format="multipart")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.startswith(b"loopback heard")


def test_speech_is_the_providers_audio(client: APIClient, models: None) -> None:
    response = client.post(SPEECH, {"model": "loopback/tts-1", "input": "Hello", "voice": "alloy"}, "json")

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "audio/mpeg"
    assert response.content == SPEECH_BYTES + b"Hello"
    assert PassthroughCall.objects.get().kind == "speech"


def test_an_unknown_model_is_not_found(client: APIClient, models: None, openai_server: OpenAIServer) -> None:
    response = client.post(IMAGES, {"model": "loopback/no-such-model", "prompt": "a cat"}, "json")

    assert_openai_error(response, 404, code="model_not_found", param="model")
    assert posts(openai_server) == []


def test_a_model_that_does_not_offer_the_route_is_refused(client: APIClient, models: None) -> None:
    assert_openai_error(
        client.post(IMAGES, {"model": "loopback/gpt-4o", "prompt": "a cat"}, "json"),
        400,
        code="model_not_supported",
        param="model",
    )
    assert_openai_error(
        client.post(SPEECH, {"model": "loopback/gpt-image-1", "input": "hi"}, "json"),
        400,
        code="model_not_supported",
        param="model",
    )
    # The built-in models run in-process: nothing to pass through to.
    assert_openai_error(
        client.post(SPEECH, {"model": "offline/aihub-offline-1", "input": "hi"}, "json"),
        400,
        code="model_not_supported",
        param="model",
    )
    assert not PassthroughCall.objects.exists()


def test_a_disabled_provider_hides_its_models(client: APIClient, provider: ModelProvider, models: None) -> None:
    ModelProvider.objects.filter(pk=provider.pk).update(enabled=False)

    response = client.post(IMAGES, {"model": "loopback/gpt-image-1", "prompt": "a cat"}, "json")

    assert_openai_error(response, 404, code="model_not_found", param="model")


def test_missing_fields_are_openai_errors(client: APIClient, models: None) -> None:
    assert_openai_error(client.post(IMAGES, {"prompt": "a cat"}, "json"), 400, code="missing_required_parameter")
    assert_openai_error(
        client.post(IMAGES, {"model": "loopback/gpt-image-1"}, "json"),
        400,
        code="missing_required_parameter",
        param="prompt",
    )
    assert_openai_error(
        client.post(TRANSCRIPTIONS, {"model": "loopback/gpt-4o-transcribe"}, format="multipart"),
        400,
        code="missing_required_parameter",
        param="file",
    )


def test_a_too_large_audio_file_is_refused_before_the_provider(
    client: APIClient, models: None, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passthrough, "TRANSCRIPTION_MAX_BYTES", 100)

    body = {"model": "loopback/gpt-4o-transcribe", "file": audio_file(101)}
    response = client.post(TRANSCRIPTIONS, body, format="multipart")

    assert_openai_error(response, 413, code="file_too_large", param="file")
    assert posts(openai_server) == []


def test_the_providers_refusal_is_a_400_with_its_words(
    client: APIClient, models: None, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(400, "Invalid voice 'nobody'.")

    response = client.post(SPEECH, {"model": "loopback/tts-1", "input": "hi", "voice": "nobody"}, "json")

    message = assert_openai_error(response, 400, code="provider_refused")
    assert "Invalid voice 'nobody'." in message
    assert not PassthroughCall.objects.exists()


def test_the_providers_failure_is_a_502_without_a_trace(
    client: APIClient, models: None, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(500, "upstream exploded")

    response = client.post(IMAGES, {"model": "loopback/gpt-image-1", "prompt": "a cat"}, "json")

    message = assert_openai_error(response, 502, code="upstream_error")
    assert "Traceback" not in message and "sk-loopback" not in message


def test_without_a_token_it_is_a_401(models: None) -> None:
    response = APIClient().post(IMAGES, {"model": "loopback/gpt-image-1", "prompt": "a cat"}, "json")

    assert_openai_error(response, 401, code="invalid_api_key")


def test_passthrough_usage_is_in_the_usage_report(client: APIClient, membership: Membership, models: None) -> None:
    client.post(IMAGES, {"model": "loopback/gpt-image-1", "prompt": "a cat"}, "json")

    report = client.get(
        f"/api/v1/{membership.tenant.slug}/usage", {"group_by": "model", "from": "2000-01-01T00:00:00Z"}
    ).json()

    assert report["totals"]["total_tokens"] == 46
    assert report["totals"]["jobs"] == 0
    assert [(group["key"], group["total_tokens"]) for group in report["groups"]] == [("loopback/gpt-image-1", 46)]
    assert sum(point["total_tokens"] for point in report["series"]) == 46


def test_a_used_up_limit_on_models_refuses_the_call_and_counts_what_was_used(
    client: APIClient, membership: Membership, models: None, openai_server: OpenAIServer
) -> None:
    limit = usage.usage_limit_create(
        role=Role.objects.get(tenant=membership.tenant, name="member"),
        name="images",
        amount=Decimal(50),
        target=LimitTarget.MODELS,
        pattern="loopback/*",
    )
    body = {"model": "loopback/gpt-image-1", "prompt": "a cat"}

    assert client.post(IMAGES, body, "json").status_code == 200  # 46 of 50
    assert client.post(IMAGES, body, "json").status_code == 200  # 46 < 50 still left: admitted, now 92
    refused = client.post(IMAGES, body, "json")

    assert_openai_error(refused, 429, code="usage_limit_exceeded")
    assert refused["Retry-After"]
    assert len(posts(openai_server)) == 2
    (state,) = usage.limit_states(tenant=membership.tenant, user=membership.user)
    assert state.limit == limit and state.used == 92
