from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from aihub.access.api import views

router = SimpleRouter()
router.register("tokens", views.ApiTokenViewSet, basename="token")
router.register("tenants", views.TenantsViewSet, basename="tenant")

tenant_router = SimpleRouter()
tenant_router.register("roles", views.RoleViewSet, basename="role")
tenant_router.register("members", views.MemberViewSet, basename="member")

urlpatterns = [path("me", views.MeView.as_view(), name="me"), *router.urls]
tenant_urlpatterns = [
    *tenant_router.urls,
    path("audit-log/", views.AuditLogViewSet.as_view({"get": "list"}), name="audit-log"),
]
