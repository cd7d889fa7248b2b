"""The official openai SDK, unchanged, against a real daphne: images and audio passed through to a provider."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.agents.openai_server import IMAGE_BYTES, SPEECH_BYTES, OpenAIServer
from tests.servers import REPO, base_env, start_daphne, stop_server

pytestmark = pytest.mark.timeout(120)

PROVIDER_SETUP = """
from agents.models import CatalogueModel, ModelProvider, ModelType
provider = ModelProvider.objects.create(name="loopback", base_url="{base_url}", api_key="sk-loopback", max_retries=0)
for name, type in (("gpt-image-1", ModelType.IMAGE), ("whisper-1", ModelType.AUDIO), ("tts-1", ModelType.AUDIO)):
    CatalogueModel.objects.create(
        model_id="loopback/" + name, provider=provider, provider_name="loopback", name=name, type=type
    )
"""


@pytest.fixture(scope="module")
def loopback() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, loopback: OpenAIServer) -> Iterator[OpenAI]:
    """The demo server (as `make run` starts it) with a model provider pointing at the loopback server."""
    env = base_env(tmp_path_factory)
    server, base = start_daphne(env)
    try:
        seeded = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--token"], cwd=REPO, env=env, check=True, capture_output=True
        )
        setup = PROVIDER_SETUP.format(base_url=loopback.base_url)
        subprocess.run([sys.executable, "manage.py", "shell", "-c", setup], cwd=REPO, env=env, check=True, timeout=60)
        token = re.search(r"aih_\S+", seeded.stdout.decode())
        assert token is not None, seeded.stdout
        yield OpenAI(base_url=f"{base}/openai/v1", api_key=token.group(0), max_retries=0, timeout=30)
    finally:
        stop_server(server)


def test_an_image_is_generated(client: OpenAI) -> None:
    images = client.images.generate(model="loopback/gpt-image-1", prompt="a lighthouse at dusk", size="1024x1024")

    assert images.data is not None
    assert base64.b64decode(images.data[0].b64_json or "") == IMAGE_BYTES
    assert images.usage is not None and images.usage.input_tokens == 12


def test_audio_is_transcribed(client: OpenAI, tmp_path: Path) -> None:
    recording = tmp_path / "hello.wav"
    recording.write_bytes(b"RIFF" + b"\0" * 60)

    with recording.open("rb") as file:
        transcription = client.audio.transcriptions.create(model="loopback/whisper-1", file=file)

    assert transcription.text.startswith("loopback heard")


def test_speech_is_synthesised(client: OpenAI) -> None:
    speech = client.audio.speech.create(model="loopback/tts-1", voice="alloy", input="Good evening")

    assert speech.content == SPEECH_BYTES + b"Good evening"


def test_a_model_without_the_capability_is_a_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="loopback/tts-1", prompt="a cat")

    assert raised.value.code == "model_not_supported"
