"""The AG-UI door: ``POST /ag-ui/{tenant}/{agent}`` runs an agent and answers with AG-UI events over SSE.

AG-UI (the Agent-User Interaction protocol, https://docs.ag-ui.com) sends a ``RunAgentInput``; the answer is a
``text/event-stream`` of AG-UI events. This module is an adapter at the two ends of aihub's flow only:

- step 1: the input becomes the same service call as ``POST agents/{slug}/messages``
  (:func:`aihub.interop.conversation.turn_submit`): the last message (from the user) starts a job of the agent;
  the AG-UI thread id names an aihub thread of the caller's tenant, created on first use (an id that is a UUID
  is the thread's own id, any other string is mapped to one, per tenant); on a new thread the earlier messages
  are stored as its history; ``system``/``developer`` messages and ``context`` become the job's additional
  instructions, ``forwardedProps`` its ``context`` (tools see it, the model does not), a non-empty ``state``
  replaces the thread's state, ``tools`` are client tools the model may call. A run is a job: its id is derived
  from the thread and ``runId``, so the same input sent again is the same run (nothing submitted twice).
- step 4: the job's events — the thread's event log, replayed then live, through the machinery of the job
  stream — are translated by :class:`RunTranslator`, a pure function of the events, into AG-UI events,
  encoded by ``ag_ui.encoder.EventEncoder``.

A call to a client tool pauses the job in ``requires_action``; the run then ends with the tool call
(``TOOL_CALL_START/ARGS/END``) and ``RUN_FINISHED`` with an ``interrupt`` outcome. The next run on the thread
answers it — with a ``tool`` message for that ``toolCallId`` in its messages, or a resume entry for the
interrupt — which answers the waiting job through ``jobs.services.job_respond``; the same job carries on and
that run streams the rest of it. Approval-gated tools and input requests are interrupts too, answered by resume
entries (``payload``: an aihub response such as ``{"action": "approve"}``).

Each frame made from an aihub event carries that event's id (``id:``): sending the same input again with
``Last-Event-ID`` resumes the run after it, every event exactly once. Authentication, tenant rules, throttles,
busy threads, Idempotency-Key and usage limits are the native API's; errors before the stream are problem
details, errors after it has started a ``RUN_ERROR`` event.
"""

from aihub.interop.agui.runs import AguiRunView, pending_answer, run_plan
from aihub.interop.agui.translation import RunTranslator, state_patch

__all__ = ["AguiRunView", "RunTranslator", "pending_answer", "run_plan", "state_patch"]
