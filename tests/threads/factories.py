from __future__ import annotations

from typing import Any

import factory

from tests.factories import TenantFactory, UserFactory
from threads import services
from threads.models import Thread


class ThreadFactory(factory.django.DjangoModelFactory[Thread]):
    """A thread created through threads.services, its creator a member."""

    class Meta:
        model = Thread

    tenant = factory.SubFactory(TenantFactory)
    created_by = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Thread {n}")

    @classmethod
    def _create(cls, model_class: type[Thread], *args: Any, **kwargs: Any) -> Thread:
        return services.thread_create(**kwargs)
