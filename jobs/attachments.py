"""What a message brings besides its text: ``attachments`` (the caller's files, by id) and ``file_urls`` (fetched
server-side, only from the FILE_URL_ALLOWLIST, into files of the caller).

``job_submit_with_attachments`` is the submission service every job-starting route calls (through
jobs.api.submission): it checks the attachments, fetches the URLs before anything is written, then stores the
fetched files, the message (with an image or file block per attachment) and the job in one transaction. When any
part is refused, nothing is written and no fetched bytes stay in storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent
from aihub import extraction, outbound
from aihub.conf import aihub_settings
from jobs.models import Job
from jobs.services import job_submit
from threads import selectors as thread_selectors
from threads import services as thread_services
from threads.content import file_ids_of, validate_content
from threads.models import File

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class _Retried(Exception):
    """The submission was a retry of an earlier one: undo the files fetched for it, answer the earlier job."""

    def __init__(self, job: Job) -> None:
        self.job = job


def attachment_block(file: File) -> dict[str, Any]:
    """The content block a message carries for an attached file: an image block for images, else a file block."""
    kind = "image" if extraction.is_image(file.media_type) else "file"
    return {"type": kind, "file_id": str(file.pk), "name": file.name, "media_type": file.media_type}


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def attachments_resolve(
    *, agent: Agent, user: User, attachments: Sequence[uuid.UUID], content: list[dict[str, Any]]
) -> list[File]:
    """The caller's files the message attaches, in order; a ValidationError naming each id that is not one of
    the caller's files in the agent's tenant (unknown, someone else's and another tenant's read the same).

    Image and file blocks written into ``content`` by the client are held to the same rule: a block cannot
    smuggle in a file its author may not read.
    """
    wanted = {index: _as_uuid(file_id) for index, file_id in enumerate(attachments)}
    in_content = [_as_uuid(file_id) for file_id in file_ids_of(content)]
    ids = {file_id for file_id in [*wanted.values(), *in_content] if file_id is not None}
    owned = {
        file.pk: file
        for file in thread_selectors.files_of_uploader(tenant_id=agent.tenant_id, user_id=user.pk, ids=ids)
    }
    errors: dict[str, str] = {}
    for index, file_id in wanted.items():
        if file_id not in owned:
            errors[f"attachments[{index}].file"] = f"No file {attachments[index]} among your files in this tenant."
    if any(file_id not in owned for file_id in in_content):
        errors["content"] = "A content block refers to a file that is not among your files in this tenant."
    if errors:
        raise ValidationError(errors)
    return [owned[file_id] for file_id in dict.fromkeys(wanted.values()) if file_id is not None]


def file_urls_fetch(*, urls: Sequence[str]) -> list[outbound.Fetched]:
    """Every URL fetched (through aihub.outbound, within FILE_URL_ALLOWLIST and FILE_MAX_BYTES), or a
    ValidationError naming each URL that may not or could not be fetched. Writes nothing."""
    fetched: list[outbound.Fetched] = []
    errors: dict[str, str] = {}
    for index, url in enumerate(urls):
        try:
            fetched.append(
                outbound.fetch(
                    url,
                    allowlist=list(aihub_settings.FILE_URL_ALLOWLIST),
                    max_bytes=int(aihub_settings.FILE_MAX_BYTES),
                )
            )
        except outbound.OutboundURLError as exc:
            errors[f"file_urls[{index}]"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return fetched


def _store_fetched(*, agent: Agent, user: User, fetched: Sequence[outbound.Fetched], into: list[File]) -> None:
    for index, item in enumerate(fetched):
        try:
            into.append(
                thread_services.file_create(
                    tenant=agent.tenant,
                    uploaded_by=user,
                    name=item.filename,
                    data=item.data,
                    declared_type=item.content_type,
                    source_url=item.url,
                )
            )
        except ValidationError as exc:
            # file_create names its field "file"; here the file is the URL's.
            raise ValidationError({f"file_urls[{index}]": [f"{item.url}: {m}" for m in exc.messages]}) from None


def job_submit_with_attachments(
    *,
    agent: Agent,
    user: User,
    content: Any,
    attachments: Sequence[uuid.UUID] = (),
    file_urls: Sequence[str] = (),
    **submit: Any,
) -> tuple[Job, bool]:
    """jobs.services.job_submit for a message with attachments and file_urls; the same (job, created) answer.

    ``submit`` are job_submit's other arguments (thread, busy, idempotency_key, ...). A retry (the same
    idempotency key or job id) answers the earlier job and keeps nothing it fetched.
    """
    blocks = validate_content(content) if content not in ("", [], None) else []
    limit = int(aihub_settings.ATTACHMENTS_MAX)
    if len(attachments) + len(file_urls) > limit:
        raise ValidationError({"attachments": f"A message may carry at most {limit} attachments and file_urls."})
    files = attachments_resolve(agent=agent, user=user, attachments=attachments, content=blocks)
    if not files and not file_urls:
        return job_submit(agent=agent, user=user, content=content, **submit)
    # The network before the transaction: no lock or connection is held while a slow host answers.
    fetched = file_urls_fetch(urls=file_urls)
    stored: list[File] = []
    try:
        with transaction.atomic():
            _store_fetched(agent=agent, user=user, fetched=fetched, into=stored)
            blocks = blocks + [attachment_block(file) for file in [*files, *stored]]
            job, created = job_submit(agent=agent, user=user, content=blocks, **submit)
            if not created:
                raise _Retried(job)
    except _Retried as retried:
        thread_services.files_discard_stored(files=stored)
        return retried.job, False
    except BaseException:
        thread_services.files_discard_stored(files=stored)
        raise
    return job, True
