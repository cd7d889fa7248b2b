"""``GET /api/v1/{tenant}/models`` and ``.../models/{id}``: the model catalogue, grouped by type.

Thin: refresh what is due, read, render. Seeing the catalogue takes ``aihub.user.models``; hidden models do not
exist for the API (404).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents import catalogue
from agents.models import CatalogueModel, ModelType
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantApiView
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer

MODELS_RESOURCE = "models"


def _price(value: Any) -> float | None:
    return None if value is None else float(value)


def model_body(model: CatalogueModel, statuses: dict[str, catalogue.ProviderStatus]) -> dict[str, Any]:
    status = statuses.get(model.provider_name)
    return {
        "id": model.model_id,
        "provider": model.provider_name,
        "name": model.name,
        "type": model.type,
        "context_length": model.context_length,
        "dimensions": model.dimensions,
        "pricing": {
            "input_per_million": _price(model.input_price_per_million),
            "output_per_million": _price(model.output_price_per_million),
            "currency": settings.USAGE_CURRENCY,
        },
        "owned_by": model.owned_by,
        "source": model.source,
        "available": model.available,
        "stale": bool(status and status.stale),
    }


class PricingSerializer(serializers.Serializer):
    input_per_million = serializers.FloatField(allow_null=True, help_text="Price of a million input tokens.")
    output_per_million = serializers.FloatField(allow_null=True, help_text="Price of a million output tokens.")
    currency = serializers.CharField()


class CatalogueModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The model id agents use: <provider>/<model>.")
    provider = serializers.CharField()
    name = serializers.CharField(help_text="The provider's own name.")
    type = serializers.ChoiceField(choices=ModelType.choices)
    context_length = serializers.IntegerField(allow_null=True)
    dimensions = serializers.IntegerField(allow_null=True, help_text="Embedding models: the vector size.")
    pricing = PricingSerializer()
    owned_by = serializers.CharField()
    available = serializers.BooleanField(help_text="In the provider's latest good model list.")
    stale = serializers.BooleanField(help_text="The provider's list failed since; this is its last good copy.")

    def get_fields(self) -> dict[str, serializers.Field]:
        # "source" would shadow the Field attribute of that name if declared on the class.
        fields = super().get_fields()
        fields["source"] = serializers.CharField(help_text="builtin or provider.")
        return fields


class ProviderStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    refreshed_at = serializers.DateTimeField(allow_null=True, help_text="When the model list last answered.")
    stale = serializers.BooleanField()
    stale_since = serializers.DateTimeField(allow_null=True, help_text="Since when the model list fails.")
    error = serializers.CharField(help_text="Why it fails; empty while fresh.")


class CatalogueSerializer(serializers.Serializer):
    stale = serializers.BooleanField(help_text="Some provider's list failed: its models are the last good copy.")
    providers = ProviderStatusSerializer(many=True)
    models = serializers.DictField(
        child=CatalogueModelSerializer(many=True), help_text="By type: chat, embedding, other."
    )


_MODEL_EXAMPLE = {
    "id": "offline/aihub-offline-1",
    "provider": "offline",
    "name": "aihub-offline-1",
    "type": "chat",
    "context_length": 8192,
    "dimensions": None,
    "pricing": {"input_per_million": 0.0, "output_per_million": 0.0, "currency": "USD"},
    "owned_by": "aihub",
    "source": "builtin",
    "available": True,
    "stale": False,
}
CATALOGUE_EXAMPLE = {
    "stale": True,
    "providers": [
        {
            "name": "openai",
            "refreshed_at": "2026-11-25T09:00:00Z",
            "stale": True,
            "stale_since": "2026-11-25T10:05:00Z",
            "error": "Model provider 'openai' could not be reached at https://api.openai.com/v1/.",
        }
    ],
    "models": {
        "chat": [
            _MODEL_EXAMPLE,
            {
                **_MODEL_EXAMPLE,
                "id": "openai/gpt-4o-mini",
                "provider": "openai",
                "name": "gpt-4o-mini",
                "context_length": 128000,
                "pricing": {"input_per_million": 0.15, "output_per_million": 0.6, "currency": "USD"},
                "owned_by": "system",
                "source": "provider",
                "stale": True,
            },
        ],
        "embedding": [
            {
                **_MODEL_EXAMPLE,
                "id": "local/all-MiniLM-L6-v2",
                "provider": "local",
                "name": "all-MiniLM-L6-v2",
                "type": "embedding",
                "context_length": 256,
                "dimensions": 384,
                "owned_by": "sentence-transformers",
            }
        ],
        "other": [],
    },
}


def _statuses() -> dict[str, catalogue.ProviderStatus]:
    return {status.name: status for status in catalogue.provider_statuses()}


@extend_schema(parameters=[TENANT_PARAMETER], tags=["models"])
class ModelCatalogueView(TenantApiView):
    @extend_schema(
        operation_id="models_list",
        summary="The model catalogue",
        description="The chat and embedding models of the configured providers (their model lists, cached) and "
        "the built-in ones, grouped by type, with context length and prices per million tokens. A provider "
        "whose list fails is served from its last good copy, marked `stale`.",
        responses=OpenApiResponse(
            CatalogueSerializer, examples=[OpenApiExample("Catalogue with a stale provider", CATALOGUE_EXAMPLE)]
        ),
    )
    def get(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", MODELS_RESOURCE)
        catalogue.catalogue_refresh_due()
        statuses = _statuses()
        grouped: dict[str, list[dict[str, Any]]] = {value: [] for value in ModelType.values}
        for model in catalogue.model_list():
            grouped[model.type].append(model_body(model, statuses))
        return Response(
            {
                "stale": any(status.stale for status in statuses.values()),
                "providers": [
                    {
                        "name": s.name,
                        "refreshed_at": s.refreshed_at,
                        "stale": s.stale,
                        "stale_since": s.stale_since,
                        "error": s.error,
                    }
                    for s in statuses.values()
                ],
                "models": grouped,
            }
        )


@extend_schema(
    parameters=[
        TENANT_PARAMETER,
        OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="<provider>/<model>."),
    ],
    tags=["models"],
)
class ModelDetailView(TenantApiView):
    @extend_schema(
        operation_id="models_retrieve",
        summary="One model of the catalogue",
        responses={
            200: OpenApiResponse(CatalogueModelSerializer, examples=[OpenApiExample("A model", _MODEL_EXAMPLE)]),
            (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description="No such (visible) model."),
        },
    )
    def get(self, request: Request, tenant: str, model_id: str) -> Response:
        self.principal.require("user", MODELS_RESOURCE)
        catalogue.catalogue_refresh_due()
        model = catalogue.model_get(model_id=model_id)
        if model is None:
            raise Http404(f"No model {model_id[:300]!r} in the catalogue.")
        return Response(model_body(model, _statuses()))
