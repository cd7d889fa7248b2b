from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    """The chat playground: a page and its static script. It owns no models and imports no app: the script
    talks to the REST API and the WebSocket like any other client."""

    name = "aihub.playground"
    label = "playground"
    verbose_name = "Playground"
