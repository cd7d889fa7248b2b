"""The ASGI application: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from aihub import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")

# Before Django builds its handler, which reads the middleware the Django instrumentation adds (a no-op without
# OTEL_EXPORTER_OTLP_ENDPOINT).
tracing.configure()

# Django must be set up before anything imports models (the WebSocket routes do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from aihub.admission import PendingRequestLimit  # noqa: E402
from aihub.celery import start_embedded_beat, start_embedded_worker  # noqa: E402
from aihub.interop.a2a import with_a2a  # noqa: E402
from aihub.interop.mcp import with_mcp  # noqa: E402
from aihub.routing import websocket_urlpatterns  # noqa: E402
from aihub.serving import leave_request_bodies_to_django  # noqa: E402

# daphne imports this module before it listens, so every request it builds leaves multipart bodies to Django.
leave_request_bodies_to_django()

application = ProtocolTypeRouter(
    {
        # /mcp is the MCP server (aihub.interop.mcp), /a2a/ the A2A door (aihub.interop.a2a); everything else is
        # Django. Past the pending-request limit, a 503 before any (aihub.admission).
        "http": PendingRequestLimit(with_mcp(with_a2a(django_asgi_app))),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

start_embedded_worker()
start_embedded_beat()
