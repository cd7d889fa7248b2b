"""Routes of the threads API, under /api/v1/{tenant}/ (DESIGN.md's URL map, slashes included)."""

from __future__ import annotations

from django.urls import path

from threads.api.files import FileViewSet
from threads.api.views import ThreadMessagesView, ThreadViewSet

thread_list = ThreadViewSet.as_view({"get": "list", "post": "create"})
thread_detail = ThreadViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
thread_members = ThreadViewSet.as_view({"get": "members", "post": "members"})
thread_events = ThreadViewSet.as_view({"get": "events"})
thread_state = ThreadViewSet.as_view({"get": "state", "patch": "state"})
thread_runtime = ThreadViewSet.as_view({"get": "runtime"})
thread_checkpoints = ThreadViewSet.as_view({"get": "checkpoints"})
thread_fork = ThreadViewSet.as_view({"post": "fork"})

tenant_urlpatterns = [
    path("threads/", thread_list, name="thread-list"),
    path("threads/<uuid:pk>/", thread_detail, name="thread-detail"),
    path("threads/<uuid:pk>/members/", thread_members, name="thread-members"),
    path("threads/<uuid:pk>/messages/", ThreadMessagesView.as_view(), name="thread-messages"),
    path("threads/<uuid:pk>/events/", thread_events, name="thread-events"),
    path("threads/<uuid:pk>/state", thread_state, name="thread-state"),
    path("threads/<uuid:pk>/runtime", thread_runtime, name="thread-runtime"),
    path("threads/<uuid:pk>/checkpoints", thread_checkpoints, name="thread-checkpoints"),
    path("threads/<uuid:pk>/fork", thread_fork, name="thread-fork"),
    path("files/", FileViewSet.as_view({"get": "list", "post": "create"}), name="file-list"),
    path("files/<uuid:pk>/", FileViewSet.as_view({"get": "retrieve", "delete": "destroy"}), name="file-detail"),
    path("files/<uuid:pk>/content", FileViewSet.as_view({"get": "content"}), name="file-content"),
]
