from __future__ import annotations

from django.urls import path

from aihub.playground import views

app_name = "playground"

urlpatterns = [
    path("", views.PlaygroundView.as_view(), name="index"),
    path("ag-ui/", views.AguiPlaygroundView.as_view(), name="agui"),
    path("login/", views.PlaygroundLoginView.as_view(), name="login"),
    path("logout/", views.PlaygroundLogoutView.as_view(), name="logout"),
]
