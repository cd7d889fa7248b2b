"""Everything under /api/v1/: the platform routes, then each app's tenant-scoped routes."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from agents.api.urls import tenant_urlpatterns as agents_tenant_urls
from aihub.access.api.urls import tenant_urlpatterns as access_tenant_urls
from aihub.access.api.urls import urlpatterns as access_urls
from aihub.api import health
from aihub.interop.schema import TenantSchemaView, TenantSwaggerView
from jobs.api.urls import tenant_urlpatterns as jobs_tenant_urls
from knowledge.api.urls import tenant_urlpatterns as knowledge_tenant_urls
from threads.api.urls import tenant_urlpatterns as threads_tenant_urls
from threads.sse_urls import tenant_urlpatterns as sse_tenant_urls

tenant_urlpatterns = [
    *access_tenant_urls,
    *agents_tenant_urls,
    *jobs_tenant_urls,
    *knowledge_tenant_urls,
    *threads_tenant_urls,
    *sse_tenant_urls,
    path("schema/", TenantSchemaView.as_view(), name="tenant-schema"),
    path("docs/", TenantSwaggerView.as_view(), name="tenant-docs"),
]

urlpatterns = [
    path("health", health.LivenessView.as_view(), name="health"),
    path("health/ready", health.ReadinessView.as_view(), name="health-ready"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    *access_urls,
    path("<slug:tenant>/", include(tenant_urlpatterns)),
]
