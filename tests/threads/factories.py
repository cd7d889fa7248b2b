from __future__ import annotations

from typing import Any

import factory

from tests.factories import TenantFactory, UserFactory
from threads import services
from threads.models import File, Thread


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


class FileFactory(factory.django.DjangoModelFactory[File]):
    """A file uploaded through threads.services.file_create (set MEDIA_ROOT to a temporary folder first)."""

    class Meta:
        model = File

    tenant = factory.SubFactory(TenantFactory)
    uploaded_by = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"notes-{n}.txt")
    data = b"Some notes worth reading."

    @classmethod
    def _create(cls, model_class: type[File], *args: Any, **kwargs: Any) -> File:
        return services.file_create(**kwargs)
