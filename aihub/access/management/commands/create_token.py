"""``manage.py create_token USERNAME --name NAME [--tenant SLUG] [--expires-in-days N]``.

Only the secret goes to stdout, so that ``TOKEN=$(manage.py create_token ...)`` captures exactly it; everything
else goes to stderr.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from aihub.access import services
from aihub.access.management.adapters import service_errors, tenant_by_slug, user_by_username


class Command(BaseCommand):
    help = "Create an API token for a user and print its secret (shown this once) on stdout."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'ci' or 'laptop'.")
        parser.add_argument("--tenant", metavar="SLUG", help="Restrict the token to this tenant.")
        parser.add_argument("--expires-in-days", type=int, metavar="N", help="Expire after N days (default: never).")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be a whole number of days, 1 or more.")
        user = user_by_username(options["username"])
        if not user.is_active:
            raise CommandError(f"User {user.get_username()!r} is inactive; its tokens would not work.")
        tenant = tenant_by_slug(options["tenant"]) if options["tenant"] else None
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        with service_errors():
            token, secret = services.api_token_create(
                user=user, name=options["name"], tenant=tenant, expires_at=expires_at
            )
        scope = f"restricted to {tenant.slug}" if tenant else "for all of its tenants"
        expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "does not expire"
        self.stderr.write(
            f"Created token {token.name!r} ({token.display_prefix}) for {user.get_username()}, {scope}; {expiry}. "
            "The secret below is shown this once.",
            style_func=lambda text: text,
        )
        self.stdout.write(secret)
