from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from oauth2_provider import urls as oauth_urls

from aihub.interop.agui import AguiRunView

urlpatterns = [
    path("api/v1/", include("aihub.api.urls")),
    path("openai/v1/", include("aihub.interop.responses")),  # before the next, which 404s every other path
    path("openai/v1/", include("aihub.interop.openai_api")),
    path("ag-ui/<slug:tenant>/<slug:agent>", AguiRunView.as_view(), name="agui-run"),
    # The grant endpoints and their metadata only: OAuth2 applications are registered by operators in the admin,
    # not by any signed-in user through django-oauth-toolkit's management pages (nor its dynamic registration).
    path("o/", include((oauth_urls.base_urlpatterns + oauth_urls.metadata_urlpatterns, "oauth2_provider"))),
    path("admin/", admin.site.urls),
    path("playground/", include("aihub.playground.urls")),
    path("", RedirectView.as_view(url="/api/v1/docs/", permanent=False)),
]
