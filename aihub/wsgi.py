from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from aihub import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")

tracing.configure()  # before the handler reads the middleware (a no-op without OTEL_EXPORTER_OTLP_ENDPOINT)

application = get_wsgi_application()
