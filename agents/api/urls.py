"""Routes under /api/v1/{tenant}/agents/. ``classes/`` comes before ``<slug>/`` so it is never taken for a slug
(agents.services also refuses the reserved slugs)."""

from __future__ import annotations

from django.urls import path

from agents.api import views

agents = views.AgentViewSet.as_view({"get": "list", "post": "create"})
agent = views.AgentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
versions = views.AgentVersionViewSet.as_view({"get": "list"})
version = views.AgentVersionViewSet.as_view({"get": "retrieve"})

tenant_urlpatterns = [
    path("agents/classes/", views.AgentClassListView.as_view(), name="agent-class-list"),
    path("agents/classes/<str:name>", views.AgentClassDetailView.as_view(), name="agent-class-detail"),
    path("agents/", agents, name="agent-list"),
    path("agents/<slug:slug>/", agent, name="agent-detail"),
    path("agents/<slug:slug>/versions/", versions, name="agent-version-list"),
    path("agents/<slug:slug>/versions/<int:version>", version, name="agent-version-detail"),
    path("agents/<slug:slug>/tools/<str:name>", views.AgentToolCallView.as_view(), name="agent-tool-call"),
    path("agents/<slug:slug>/messages", views.AgentMessagesView.as_view(), name="agent-messages"),
]
