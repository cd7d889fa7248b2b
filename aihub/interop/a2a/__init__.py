"""The A2A door (Agent2Agent protocol 1.0, and the 0.3 method names; https://a2a-protocol.org): every enabled
agent is an A2A agent.

- ``GET /a2a/{tenant}/{agent}/.well-known/agent-card.json``: its public agent card (aihub.interop.a2a.card).
- ``POST /a2a/{tenant}/{agent}``: JSON-RPC 2.0 (the official ``a2a-sdk``'s dispatcher): ``SendMessage``,
  ``SendStreamingMessage``, ``GetTask``, ``ListTasks``, ``CancelTask``, ``SubscribeToTask``, the push
  notification config methods and ``GetExtendedAgentCard``, answered by aihub.interop.a2a.handler over jobs.

Tasks are jobs, contexts are threads, artifacts the job's artifacts; push notifications are the job's webhook
(aihub.interop.a2a.push). An adapter like the other doors: no models, no runtime, no store of its own.
"""

from __future__ import annotations

from aihub.interop.a2a.app import with_a2a

__all__ = ["with_a2a"]
