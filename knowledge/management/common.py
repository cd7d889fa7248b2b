"""What the knowledge commands share: finding the tenant and collection, and ingesting documents inline."""

from __future__ import annotations

from django.core.management.base import CommandError

from aihub.access.models import Tenant
from knowledge.models import Collection


def find_tenant(slug: str | None) -> Tenant:
    if slug:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}.")
        return tenant
    tenants = list(Tenant.objects.order_by("slug")[:2])
    if len(tenants) != 1:
        raise CommandError("Name the tenant with --tenant (there is not exactly one).")
    return tenants[0]


def find_collection(tenant: Tenant, slug: str) -> Collection:
    collection = Collection.objects.filter(tenant=tenant, slug=slug).first()
    if collection is None:
        raise CommandError(f"No collection {slug!r} in tenant {tenant.slug!r} (--create makes it).")
    return collection
