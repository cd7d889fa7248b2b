"""The knowledge tests' embedder fixture, for the embeddings and knowledge_search tests here."""

from __future__ import annotations

from tests.knowledge.conftest import minilm

__all__ = ["minilm"]
