"""Routes under /api/v1/{tenant}/collections/ and /api/v1/{tenant}/search."""

from __future__ import annotations

from django.urls import path

from knowledge.api import views

collections = views.CollectionViewSet.as_view({"get": "list", "post": "create"})
collection = views.CollectionViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
documents = views.DocumentViewSet.as_view({"get": "list", "post": "create"})
document = views.DocumentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
content = views.DocumentViewSet.as_view({"get": "content"})
chunks = views.ChunkViewSet.as_view({"get": "list"})
document_chunks = views.ChunkViewSet.as_view({"get": "document"})

tenant_urlpatterns = [
    path("collections/", collections, name="collection-list"),
    path("collections/<slug:slug>/", collection, name="collection-detail"),
    path("collections/<slug:slug>/documents/", documents, name="document-list"),
    path("collections/<slug:slug>/documents/<uuid:document_id>/", document, name="document-detail"),
    path("collections/<slug:slug>/documents/<uuid:document_id>/content", content, name="document-content"),
    path("collections/<slug:slug>/chunks/", chunks, name="chunk-list"),
    path("collections/<slug:slug>/documents/<uuid:document_id>/chunks/", document_chunks, name="document-chunk-list"),
    path("collections/<slug:slug>/search", views.CollectionSearchView.as_view(), name="collection-search"),
    path("search", views.TenantSearchView.as_view(), name="tenant-search"),
]
