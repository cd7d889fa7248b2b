"""Per-request context (request id, client address) that logs and the audit log read without a request object."""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("aihub_request_id", default="")
client_ip_var: ContextVar[str | None] = ContextVar("aihub_client_ip", default=None)


class RequestIdLogFilter(logging.Filter):
    """Puts the request id on every log record (``%(request_id)s``); imported by LOGGING before Django is set up."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True
