"""``manage.py seed_demo [--password P] [--token]``: the demo tenant and user, safe to run on every start."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aihub.access import services
from aihub.access.management.adapters import service_errors
from aihub.access.models import Membership, Tenant

TENANT_SLUG = "demo"
USERNAME = "demo"
DEBUG_PASSWORD = "demo"


class Command(BaseCommand):
    help = (
        "Make tenant 'demo' and user 'demo' (a superuser and admin of the tenant) unless they exist. "
        "With DJANGO_DEBUG on the password is 'demo'; with it off, --password is required. "
        "An existing user keeps its password. --token also creates an API token and prints it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--password", help="The demo user's password (required when DJANGO_DEBUG is off).")
        parser.add_argument("--token", action="store_true", help="Create an API token for the demo user.")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server listens, for the hints.")

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"]
        if not password:
            if not settings.DEBUG:
                # A well-known password is acceptable on a laptop, never on a reachable server.
                raise CommandError("DJANGO_DEBUG is off: give the demo user a password with --password.")
            password = DEBUG_PASSWORD
        with service_errors(), transaction.atomic():
            tenant, tenant_created = self._tenant()
            user = get_user_model().objects.filter(username=USERNAME).first()
            user_created = user is None
            if user is None:
                # A superuser, so that the README's first login shows the whole admin.
                user = services.user_create(
                    username=USERNAME, email="demo@example.com", password=password, is_staff=True, is_superuser=True
                )
            self._ensure_admin(tenant, user)
            secret = None
            if options["token"]:
                _token, secret = services.api_token_create(user=user, name="demo", tenant=tenant)

        url = options["url"].rstrip("/")
        self.stdout.write(
            f"Tenant {TENANT_SLUG}: {'created' if tenant_created else 'already there'}. "
            f"User {USERNAME}: {'created' if user_created else 'already there'}, admin of {TENANT_SLUG}."
        )
        if user_created and not options["password"]:
            login = f"{USERNAME} / {DEBUG_PASSWORD}"
        elif user_created:
            login = f"{USERNAME} with the password you gave"
        else:
            login = f"{USERNAME} with its existing password"
        self.stdout.write(f"Admin: {url}/admin/ (log in as {login}); API docs: {url}/api/v1/docs/")
        if secret is not None:
            self.stdout.write(f"API token (shown this once): {secret}")
            self.stdout.write(f'Try: curl -H "Authorization: Bearer {secret}" {url}/api/v1/me')
        else:
            self.stdout.write(f"API token: python manage.py create_token {USERNAME} --name cli  (or seed_demo --token)")

    def _tenant(self) -> tuple[Tenant, bool]:
        tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
        if tenant is not None:
            return tenant, False
        return services.tenant_create(slug=TENANT_SLUG, name="Demo"), True

    def _ensure_admin(self, tenant: Tenant, user: Any) -> None:
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None:
            services.membership_create(tenant=tenant, user=user, role_names=["admin"])
            return
        names = set(membership.roles.values_list("name", flat=True))
        if "admin" not in names:
            services.membership_set_roles(membership=membership, role_names=sorted(names | {"admin"}))
