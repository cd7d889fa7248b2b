"""`rag`: retrieve from the agent's knowledge collections, then answer from those passages with citations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from agents.providers import provider_for
from agents.providers.base import ChatRequest
from agents.registry import AgentClass, AgentConfig, register
from agents.retrieval import citation_blocks, retrieval_event, retrieve, sources_prompt
from agents.runtime import AgentOutput, Emit, Reply, chat_messages, llm_turn
from knowledge.search import DEFAULT_ALPHA, DEFAULT_CANDIDATES, MAX_CANDIDATES, SearchError
from threads.content import text_of

RAG_INSTRUCTIONS = (
    "Answer the question from the numbered sources only, citing them as [n]. "
    "If the sources do not answer it, say that you do not know."
)


class RagConfig(AgentConfig):
    collections: list[str] = Field(
        default_factory=list, description="Collection slugs to search; empty: every collection of the tenant."
    )
    top_k: int = Field(default=5, ge=1, le=20)
    mode: str = Field(default="hybrid", pattern="^(vector|keyword|hybrid)$")
    filters: dict[str, Any] = Field(default_factory=dict, description="Metadata filters, as in the search API.")
    alpha: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=f"Hybrid: the vector leg's weight against the keyword leg's; empty: {DEFAULT_ALPHA}.",
    )
    candidates: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CANDIDATES,
        description=f"Hybrid: chunks per leg (at least top_k); empty: 5 x top_k, at least {DEFAULT_CANDIDATES}.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    history_window: int = Field(default=10, ge=0, le=500)


@register
class RagAgent(AgentClass):
    name = "rag"
    description = "Retrieves passages from knowledge collections and answers from them, with citations."
    Config = RagConfig

    def execute(self) -> Iterator[AgentOutput]:
        config: RagConfig = self.config
        question = text_of(self.run.input).strip()
        try:
            hits = retrieve(
                tenant_id=self.run.tenant_id,
                query=question,
                collections=config.collections,
                top_k=config.top_k,
                mode=config.mode,
                filters=config.filters,
                alpha=config.alpha,
                candidates=config.candidates,
            )
            error = ""
        except SearchError as exc:
            hits, error = [], str(exc)
        yield Emit("retrieval.completed", retrieval_event(question, hits, **({"error": error} if error else {})))
        provider, model = provider_for(self.run.model, client_config=self.run.client_config)
        messages = chat_messages(self.run, history_window=config.history_window)
        system = "\n\n".join(
            part for part in (self.run.system_prompt, RAG_INSTRUCTIONS, self.run.additional_instructions) if part
        )
        messages = [{"role": "system", "content": system}] + [m for m in messages if m["role"] != "system"]
        messages[-1] = {"role": "user", "content": sources_prompt(question, hits)}
        parameters = {"temperature": config.temperature} if config.temperature is not None else {}
        result = yield from llm_turn(provider, ChatRequest(model=model, messages=messages, parameters=parameters))
        yield Reply([{"type": "text", "text": result.text}, *citation_blocks(hits)])
