"""The official openai SDK, unchanged, against a real daphne: models, chat completions, streaming, threads."""

from __future__ import annotations

import base64

import openai
import pytest
from openai import OpenAI

from tests.sample_files import png
from tests.servers import http_json

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(embedded_server: tuple[str, str]) -> OpenAI:
    base, token = embedded_server
    return OpenAI(base_url=f"{base}/openai/v1", api_key=token, max_retries=0, timeout=30)


def test_the_demo_agents_are_models(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert {"echo", "assistant", "calculator"} <= set(ids)
    echo = client.models.retrieve("echo")
    assert echo.id == "echo"
    assert echo.owned_by == "demo"


def test_an_unknown_model_is_a_not_found_error(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"


def test_a_chat_completion_is_the_agents_answer_with_usage(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_a_streamed_completion_arrives_in_chunks_and_ends_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    deltas = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert "".join(deltas) == "one two three four"
    assert len(deltas) == 4  # the echo agent streams one word per llm.chunk event
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_a_thread_is_continued_through_metadata(client: OpenAI) -> None:
    first = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "My name is Ada."}])
    thread = first.model_extra["thread"] if first.model_extra else None
    assert thread
    second = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "What is my name?"}], metadata={"thread": thread}
    )
    assert second.model_extra and second.model_extra["thread"] == thread
    assert second.choices[0].message.content


def test_embeddings_come_from_the_local_model(client: OpenAI) -> None:
    # The SDK asks for base64 and decodes it: the vectors arrive as floats.
    response = client.embeddings.create(model="local/all-MiniLM-L6-v2", input=["first text", "second text"])
    assert [item.index for item in response.data] == [0, 1]
    assert len(response.data[0].embedding) == 384
    assert abs(sum(value * value for value in response.data[0].embedding) - 1.0) < 1e-4
    assert response.usage.prompt_tokens > 0


def test_an_image_sent_as_a_base64_data_url_reaches_the_thread_as_a_file(
    client: OpenAI, embedded_server: tuple[str, str]
) -> None:
    base, token = embedded_server
    image = "data:image/png;base64," + base64.b64encode(png()).decode()
    completion = client.chat.completions.create(
        model="echo",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe this"},
                    {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "describe this"
    thread = completion.model_extra["thread"] if completion.model_extra else None
    status, page = http_json(f"{base}/api/v1/demo/threads/{thread}/messages/", token=token)
    assert status == 200, page
    image_block = page["items"][0]["content"][1]
    assert (image_block["type"], image_block["media_type"], image_block["detail"]) == ("image", "image/png", "low")
    status, file = http_json(f"{base}/api/v1/demo/files/{image_block['file_id']}/", token=token)
    assert status == 200 and file["size"] == len(png()), file
