"""What aihub changes in daphne, the ASGI server it is served with (`make run`, the Docker image)."""

from __future__ import annotations

from typing import Any


def leave_request_bodies_to_django() -> None:
    """daphne's requests are Twisted's, which parse every ``multipart/form-data`` POST body into ``args`` that
    nobody reads (daphne hands the raw body to the application) and answer a body they cannot parse (a JSON body
    under a multipart Content-Type, a missing or wrong boundary) with a bare 400 of their own, no headers at all:
    no problem details, no X-Request-ID, and Django never sees the request. Without that parse Django reads the
    body, and a malformed one is answered as every other error under /api/ (a problem). Idempotent."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_aihub_leaves_bodies_to_django", False):
        return
    twisted_init = WebRequest.__init__

    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        twisted_init(self, *args, **kwargs)

    WebRequest.__init__ = __init__
    WebRequest._aihub_leaves_bodies_to_django = True
