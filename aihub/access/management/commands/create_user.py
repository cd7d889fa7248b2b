"""``manage.py create_user USERNAME [--email E] [--password-file PATH | --password P] [--tenant SLUG --role ROLE ...]
[--staff]``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aihub.access import services
from aihub.access.management.adapters import read_password_file, service_errors, tenant_by_slug


class Command(BaseCommand):
    help = (
        "Create a user, optionally a member of one tenant with the given roles (default: member). "
        "Without a password the user gets an unusable one and signs in with API tokens or single sign-on."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        password = parser.add_mutually_exclusive_group()
        password.add_argument(
            "--password-file", metavar="PATH", help="Read the password from this file (its first line ending is cut)."
        )
        password.add_argument(
            "--password", help="The password itself; prefer --password-file, as others can see command lines."
        )
        parser.add_argument("--tenant", metavar="SLUG", help="Make the user a member of this tenant.")
        parser.add_argument(
            "--role",
            action="append",
            default=[],
            metavar="ROLE",
            help="A role in --tenant (repeat for several; default: member).",
        )
        parser.add_argument("--staff", action="store_true", help="Let the user log in to the admin.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["role"] and not options["tenant"]:
            raise CommandError("--role needs --tenant: roles belong to a tenant.")
        tenant = tenant_by_slug(options["tenant"]) if options["tenant"] else None
        password = options["password"]
        if options["password_file"]:
            password = read_password_file(options["password_file"])
        if password:
            self._validate_password(password, username=options["username"], email=options["email"])
        role_names = options["role"] or ["member"]
        with service_errors(), transaction.atomic():
            # One transaction: a user whose membership fails (an unknown role, say) is not left behind.
            user = services.user_create(
                username=options["username"], email=options["email"], password=password, is_staff=options["staff"]
            )
            if tenant is not None:
                services.membership_create(tenant=tenant, user=user, role_names=role_names)
        kind = "staff user" if user.is_staff else "user"
        self.stdout.write(f"Created {kind} {user.get_username()}.")
        if not password:
            self.stdout.write("It has no usable password: it signs in with API tokens or single sign-on.")
        if tenant is not None:
            self.stdout.write(f"Member of {tenant.slug} with roles: {', '.join(sorted(set(role_names)))}.")

    def _validate_password(self, password: str, *, username: str, email: str) -> None:
        candidate = get_user_model()(username=username, email=email)
        try:
            password_validation.validate_password(password, user=candidate)
        except ValidationError as exc:
            raise CommandError(f"The password is too weak: {' '.join(exc.messages)}") from exc
