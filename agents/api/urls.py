"""Routes under /api/v1/{tenant}/agents/. ``classes/`` comes before ``<slug>/`` so it is never taken for a slug
(agents.services also refuses the reserved slugs)."""

from __future__ import annotations

from django.urls import path

from agents.api import catalogue, memories, views

agents = views.AgentViewSet.as_view({"get": "list", "post": "create"})
agent = views.AgentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
versions = views.AgentVersionViewSet.as_view({"get": "list"})
version = views.AgentVersionViewSet.as_view({"get": "retrieve"})

memory_list = memories.MemoryViewSet.as_view({"get": "list", "post": "create", "delete": "destroy_all"})
memory = memories.MemoryViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
org_memory_list = memories.OrgMemoryViewSet.as_view({"get": "list", "post": "create", "delete": "destroy_all"})
org_memory = memories.OrgMemoryViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})

tenant_urlpatterns = [
    path("memories/", memory_list, name="memory-list"),
    path("memories/<uuid:id>/", memory, name="memory-detail"),
    path("org-memories/", org_memory_list, name="org-memory-list"),
    path("org-memories/<uuid:id>/", org_memory, name="org-memory-detail"),
    path("agents/classes/", views.AgentClassListView.as_view(), name="agent-class-list"),
    path("agents/classes/<str:name>", views.AgentClassDetailView.as_view(), name="agent-class-detail"),
    path("agents/graph", views.AgentGraphView.as_view(), name="agent-graph"),
    path("agents/", agents, name="agent-list"),
    path("agents/<slug:slug>/", agent, name="agent-detail"),
    path("agents/<slug:slug>/versions/", versions, name="agent-version-list"),
    path("agents/<slug:slug>/handoffs/", views.AgentHandoffListView.as_view(), name="agent-handoff-list"),
    path(
        "agents/<slug:slug>/handoffs/<slug:target>",
        views.AgentHandoffDetailView.as_view(),
        name="agent-handoff-detail",
    ),
    path("agents/<slug:slug>/versions/<int:version>", version, name="agent-version-detail"),
    path("agents/<slug:slug>/tools/<str:name>", views.AgentToolCallView.as_view(), name="agent-tool-call"),
    path("agents/<slug:slug>/messages", views.AgentMessagesView.as_view(), name="agent-messages"),
    path("models", catalogue.ModelCatalogueView.as_view(), name="model-list"),
    path("models/<path:model_id>", catalogue.ModelDetailView.as_view(), name="model-detail"),
]
