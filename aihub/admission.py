"""Load shedding at the door: beyond ``AIHUB["MAX_PENDING_REQUESTS"]`` unanswered HTTP requests in this process,
a new request is answered 503 at once, with ``Retry-After`` and a problem, before any framework work.

Why: past its capacity a server that queues every request answers all of them late — measured at 50 message
POSTs a second against a capacity of about 25, the median POST waited 45 s and clients gave up (timeouts)
while the server went on doing work nobody waited for. A bounded queue keeps the answers it gives prompt
and tells the rest, cheaply, to come back.

A request counts from its arrival until its response *starts* (``http.response.start``): an open event stream
holds no place once its headers are out, a ``?wait=true`` request does while it waits for its job. The health
routes are never refused (a load balancer must still see a live process).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aihub.api.middleware import VALID_REQUEST_ID
from aihub.api.problems import PROBLEM_CONTENT_TYPE, problem
from aihub.conf import aihub_settings
from aihub.unavailable import retry_after_seconds

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
_NEVER_REFUSED = ("/api/v1/health",)


class PendingRequestLimit:
    """ASGI middleware around the HTTP application of one server process (one event loop: no lock needed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending = 0
        self.refusing = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        limit = int(aihub_settings.MAX_PENDING_REQUESTS)
        if scope["type"] != "http" or limit <= 0 or scope["path"].startswith(_NEVER_REFUSED):
            await self.app(scope, receive, send)
            return
        if self.pending >= limit:
            self._note_refusing(limit)
            await _refuse(scope, send)
            return
        self.refusing = False
        self.pending += 1
        answered = False

        async def send_counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self.pending -= 1
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            if not answered:
                self.pending -= 1

    def _note_refusing(self, limit: int) -> None:
        if not self.refusing:  # once per overload, not once per refused request
            self.refusing = True
            logger.warning("%d requests are waiting for an answer: refusing new ones with 503 until fewer", limit)


async def _refuse(scope: Scope, send: Any) -> None:
    incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
    request_id = incoming if VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    body = problem(
        status=503,
        detail="The server has more requests waiting than it takes; try again shortly.",
        instance=scope["path"],
        type_slug="overloaded",
        title="Overloaded",
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"retry-after", str(retry_after_seconds()).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
