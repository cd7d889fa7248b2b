"""``/playground/``: a server-rendered chat page, behind a session login.

The page itself only renders a template; its script (static/playground/playground.js) does the rest through
the public interfaces — the REST API with the session cookie (and CSRF) and the thread WebSocket — so this
module imports none of the apps and sits in the core, like the admin.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView


@method_decorator(ensure_csrf_cookie, name="dispatch")
class PlaygroundView(LoginRequiredMixin, TemplateView):
    # The script reads the CSRF cookie for its API calls, so the page makes sure there is one.
    template_name = "playground/index.html"
    login_url = reverse_lazy("playground:login")


@method_decorator(ensure_csrf_cookie, name="dispatch")
class AguiPlaygroundView(PlaygroundView):
    """``/playground/ag-ui/``: runs an agent through the AG-UI door and shows the AG-UI events it streams."""

    template_name = "playground/agui.html"


class PlaygroundLoginView(auth_views.LoginView):
    template_name = "playground/login.html"
    redirect_authenticated_user = True
    next_page = "playground:index"  # a URL name: resolve_url() resolves it


class PlaygroundLogoutView(auth_views.LogoutView):
    next_page = "playground:login"
