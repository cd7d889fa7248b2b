"""The memories admin: operators see what agents remember and may delete it; nobody writes memories there."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.memory import memory_create
from agents.models import Memory, MemoryScope
from aihub.access.models import Membership
from knowledge.embedders import Embedder
from tests.agents.test_admin import admin_site, operator, url  # noqa: F401 - the operator's logged-in client
from tests.knowledge.conftest import minilm  # noqa: F401 - the session-scoped model fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def remembered(membership: Membership, minilm: Embedder) -> Memory:  # noqa: F811
    return memory_create(
        tenant=membership.tenant, scope=MemoryScope.USER, owner_id=membership.user_id, text="Prefers answers in French"
    )


def test_an_operator_finds_a_users_memory_by_its_text(admin_site: Client, remembered: Memory) -> None:  # noqa: F811
    listing = admin_site.get(url(Memory, "changelist"), {"q": "French"})

    assert listing.status_code == 200
    assert "Prefers answers in French" in listing.content.decode()
    assert admin_site.get(url(Memory, "change", remembered.pk)).status_code == 200


def test_nobody_adds_or_edits_a_memory_in_the_admin(admin_site: Client, remembered: Memory) -> None:  # noqa: F811
    assert admin_site.get(url(Memory, "add")).status_code == 403
    edited = admin_site.post(url(Memory, "change", remembered.pk), {"text": "Prefers German"})

    assert edited.status_code == 403
    remembered.refresh_from_db()
    assert remembered.text == "Prefers answers in French"


def test_an_operator_deletes_a_memory(admin_site: Client, remembered: Memory) -> None:  # noqa: F811
    deleted = admin_site.post(url(Memory, "delete", remembered.pk), {"post": "yes"})

    assert deleted.status_code == 302
    assert not Memory.objects.filter(pk=remembered.pk).exists()
