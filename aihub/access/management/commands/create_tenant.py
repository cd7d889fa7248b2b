"""``manage.py create_tenant SLUG --name NAME [--ceiling RULE ...] [--owner USERNAME]``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from aihub.access import services
from aihub.access.management.adapters import service_errors, user_by_username


class Command(BaseCommand):
    help = "Create a tenant with the default roles; --owner becomes its first admin."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug", help="The tenant's slug, used in URLs: /api/v1/<slug>/...")
        parser.add_argument("--name", required=True, help="A human-readable name.")
        parser.add_argument(
            "--ceiling",
            action="append",
            default=[],
            metavar="RULE",
            help="A rule no role of the tenant may exceed (repeat for several).",
        )
        parser.add_argument("--owner", metavar="USERNAME", help="An existing user to make the tenant's admin.")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = user_by_username(options["owner"]) if options["owner"] else None
        with service_errors():
            tenant = services.tenant_create(
                slug=options["slug"], name=options["name"], rule_ceiling=options["ceiling"], owner=owner
            )
        roles = ", ".join(tenant.roles.order_by("name").values_list("name", flat=True))
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.name}) with roles: {roles}.")
        if tenant.rule_ceiling:
            self.stdout.write(f"Rule ceiling: {', '.join(tenant.rule_ceiling)}")
        if owner is not None:
            self.stdout.write(f"{owner.get_username()} is its admin.")
