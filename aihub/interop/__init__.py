"""Front doors for other ecosystems: the OpenAI-compatible API (``/openai/v1/``), the MCP server (``/mcp``), the
A2A door (``/a2a/{tenant}/{agent}``) and the per-agent paths of the OpenAPI description.

Adapters on top of the apps, like the API views: they call the services and selectors of ``agents``, ``threads``
and ``jobs`` and own no models (so this package is no Django app).
"""
