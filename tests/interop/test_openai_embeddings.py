"""POST /openai/v1/embeddings: the local model by name or a collection's embedder, OpenAI's shapes and errors."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from aihub.access.models import Membership
from knowledge.embedders import LOCAL_MINILM, Embedder
from tests.factories import TenantFactory
from tests.helpers import ClientAs
from tests.interop.test_openai_api import assert_openai_error
from tests.knowledge.factories import CollectionFactory

pytestmark = pytest.mark.django_db

EMBEDDINGS = "/openai/v1/embeddings"


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> APIClient:
    return client_as(membership)


def embed(client: APIClient, **body: Any) -> Any:
    return client.post(EMBEDDINGS, body, format="json")


def test_the_local_model_embeds_each_input_with_usage(client: APIClient, minilm: Embedder) -> None:
    response = embed(client, model=LOCAL_MINILM, input=["a purring cat", "a barking dog"])

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == LOCAL_MINILM
    assert [item["index"] for item in body["data"]] == [0, 1]
    vectors = np.array([item["embedding"] for item in body["data"]])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = minilm.count_tokens("a purring cat") + minilm.count_tokens("a barking dog")
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_base64_is_the_same_vector_as_little_endian_float32(client: APIClient, minilm: Embedder) -> None:
    as_floats = embed(client, model=LOCAL_MINILM, input="hello").json()["data"][0]["embedding"]
    encoded = embed(client, model=LOCAL_MINILM, input="hello", encoding_format="base64").json()["data"][0]["embedding"]

    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.allclose(decoded, as_floats)


def test_a_collection_names_its_embedder(client: APIClient, membership: Membership, minilm: Embedder) -> None:
    CollectionFactory.create(tenant=membership.tenant, slug="manuals")

    by_collection = embed(client, model="collection:manuals", input="hello")
    by_tenant = embed(client, model=f"collection:{membership.tenant.slug}/manuals", input="hello")

    assert by_collection.status_code == by_tenant.status_code == 200
    assert by_collection.json()["data"] == by_tenant.json()["data"]


def test_another_tenants_collection_and_remote_embedders_are_not_found(client: APIClient) -> None:
    CollectionFactory.create(tenant=TenantFactory.create(slug="rivals"), slug="secrets")

    for model in ("collection:rivals/secrets", "collection:secrets", "openai/text-embedding-3-small", "echo"):
        assert_openai_error(embed(client, model=model, input="hi"), 404, code="model_not_found", param="model")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, None, "missing_required_parameter"),
        ({"model": LOCAL_MINILM}, "input", "missing_required_parameter"),
        ({"model": LOCAL_MINILM, "input": []}, "input", "invalid_value"),
        ({"model": LOCAL_MINILM, "input": ["ok", ""]}, "input[1]", "invalid_value"),
        ({"model": LOCAL_MINILM, "input": [[1, 2, 3]]}, "input[0]", "invalid_value"),
        ({"model": LOCAL_MINILM, "input": "hi", "encoding_format": "hex"}, "encoding_format", "invalid_value"),
    ],
)
def test_malformed_requests_are_400(client: APIClient, body: dict[str, Any], param: str | None, code: str) -> None:
    assert_openai_error(embed(client, **body), 400, code=code, param=param)


def test_an_input_longer_than_the_model_reads_is_400(client: APIClient, minilm: Embedder) -> None:
    response = embed(client, model=LOCAL_MINILM, input=["short", "word " * 400])
    assert_openai_error(response, 400, code="context_length_exceeded", param="input[1]")


def test_other_dimensions_than_the_models_are_400(client: APIClient, minilm: Embedder) -> None:
    response = embed(client, model=LOCAL_MINILM, input="hi", dimensions=256)
    assert_openai_error(response, 400, code="unsupported_value", param="dimensions")
