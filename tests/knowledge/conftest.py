"""Fixtures for knowledge tests. The real local model is loaded once per test session (about 5 s)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from knowledge import index
from knowledge.embedders import LOCAL_MINILM, Embedder, LocalMiniLM, get_embedder


@pytest.fixture(scope="session")
def minilm() -> Iterator[Embedder]:
    """The real local model, loaded once; vectors are remembered by text, since tests embed the same texts
    again and again (the model is deterministic, so a remembered vector is the one it would compute)."""
    embedder = get_embedder(LOCAL_MINILM)
    assert isinstance(embedder, LocalMiniLM)
    compute = embedder.embed
    remembered: dict[str, np.ndarray[Any, Any]] = {}

    def embed(texts: list[str]) -> np.ndarray[Any, Any]:
        missing = list(dict.fromkeys(t for t in texts if t not in remembered))
        if missing:
            remembered.update(zip(missing, compute(missing), strict=True))
        return np.vstack([remembered[t] for t in texts]) if texts else compute(texts)

    embedder.embed = embed  # type: ignore[method-assign]
    yield embedder
    embedder.embed = compute  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> Iterator[None]:
    # Stored documents go to a fresh folder, and in-process vector caches start empty (ids are reused).
    settings.MEDIA_ROOT = str(tmp_path / "media")
    index.forget_matrices()
    yield
    index.forget_matrices()
