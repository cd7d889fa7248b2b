"""A2A push notifications, sent as job webhooks (jobs.webhooks: signed, retried, allowlisted).

A task's push notification config is its job's webhook (``jobs.models.JobPushConfig``). What the webhook of
such a job carries besides aihub's ``type`` and ``job``: ``task``, the A2A task as ``GetTask`` gives it (so the
body is also an A2A ``StreamResponse``), and the client's token in ``X-A2A-Notification-Token``.
"""

from __future__ import annotations

from a2a.types import StreamResponse
from google.protobuf.json_format import MessageToDict

from aihub.interop.a2a.convert import job_task
from jobs.models import Job, JobPushConfig
from jobs.selectors import artifact_list
from jobs.webhooks import WebhookExtension

TOKEN_HEADER = "X-A2A-Notification-Token"


def webhook_extension(job: Job) -> WebhookExtension | None:
    """The A2A part of the job's webhook; None for a job no A2A client asked to be notified of."""
    config = JobPushConfig.objects.filter(job=job).first()
    if config is None:
        return None
    task = job_task(job, artifacts=list(artifact_list(job=job)))
    body = MessageToDict(StreamResponse(task=task), preserving_proto_field_name=False)
    return body, {TOKEN_HEADER: config.token} if config.token else {}
