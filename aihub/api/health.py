"""Liveness and readiness. Readiness runs one check per dependency and names the ones that fail."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.api.base import ApiView
from aihub.api.problems import PROBLEM_CONTENT_TYPE, problem
from aihub.api.schema import ProblemSerializer
from aihub.celery import app as celery_app
from aihub.celery import embedded_worker_alive, embedded_worker_started
from aihub.conf import aihub_settings


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    timeout = aihub_settings.READINESS_TIMEOUT_SECONDS

    async def round_trip() -> None:
        channel = await layer.new_channel("health.")
        payload = {"type": "health.ping", "nonce": uuid.uuid4().hex}
        await asyncio.wait_for(layer.send(channel, payload), timeout)
        received = await asyncio.wait_for(layer.receive(channel), timeout)
        if received.get("nonce") != payload["nonce"]:
            raise RuntimeError("the channel layer returned another message")

    async_to_sync(round_trip)()


def check_broker() -> None:
    timeout = aihub_settings.READINESS_TIMEOUT_SECONDS
    # One retry without the default two-second pause: a probe must answer within its own timeout.
    with celery_app.connection_for_write(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)


def check_embedded_worker() -> None:
    if not embedded_worker_alive():
        raise RuntimeError("the in-process worker is not running")


def readiness_checks() -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {
        "database": check_database,
        "channel_layer": check_channel_layer,
        "broker": check_broker,
    }
    if settings.CELERY_EMBEDDED_WORKER and embedded_worker_started():
        checks["worker"] = check_embedded_worker
    return checks


def run_checks() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in readiness_checks().items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:  # a readiness probe reports every failure, whatever its kind
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return results


CheckSerializer = inline_serializer(
    "HealthCheck",
    {
        "ok": serializers.BooleanField(),
        "duration_ms": serializers.FloatField(),
        "error": serializers.CharField(required=False),
    },
)


class LivenessView(ApiView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        summary="Liveness: the process answers",
        responses=inline_serializer("Liveness", {"status": serializers.CharField()}),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadinessView(ApiView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        summary="Readiness: one check per dependency; 503 names the failing ones",
        responses={
            200: inline_serializer(
                "Readiness",
                {"status": serializers.CharField(), "checks": serializers.DictField(child=CheckSerializer)},
            ),
            503: ProblemSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        results = run_checks()
        failing = [name for name, result in results.items() if not result["ok"]]
        if not failing:
            return Response({"status": "ok", "checks": results})
        body = problem(
            status=503,
            detail=f"Not ready: {', '.join(failing)} failed.",
            instance=request.path,
            failing=failing,
            checks=results,
        )
        return Response(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
