from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from aihub.access.models import Membership

TEST_URLCONF = "tests.api.urls"


@pytest.fixture
def test_urls() -> Iterator[None]:
    """The real routes plus the failing and deprecated views of tests/api/urls.py."""
    with override_settings(ROOT_URLCONF=TEST_URLCONF):
        yield


@pytest.fixture
def member_client(membership: Membership, client_as: Callable[..., APIClient]) -> APIClient:
    """An API client of a plain member of ``membership.tenant``."""
    return client_as(membership)
