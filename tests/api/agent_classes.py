"""An agent class a schema test installs as a plug-in: it declares the ``context`` its tools read."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, Field

from agents.registry import AgentClass
from agents.runtime import AgentOutput, Reply


class TicketContext(BaseModel):
    """The ticket the customer writes about."""

    ticket_id: int = Field(ge=1, description="The ticket's number.")
    locale: str = Field(default="en", description="The customer's language.")


class TicketingAgent(AgentClass):
    name = "ticketing"
    description = "Answers about a ticket."
    Context = TicketContext
    needs_model = False

    def execute(self) -> Iterator[AgentOutput]:
        yield Reply([{"type": "text", "text": "Looking at your ticket."}])
