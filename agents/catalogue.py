"""The model catalogue: the models of the configured providers (their model lists, cached) and the built-ins.

A provider's list is copied into ``CatalogueModel`` rows and asked again at most every
``AGENTS_MODEL_LIST_TTL_SECONDS``; a conditional update of the provider's ``models_checked_at`` claims each
refresh, so concurrent readers ask once. When a list fails, the rows stay as the last good copy and the
provider's ``models_stale_since`` says since when (the API shows it). Operators set types, context lengths,
prices and visibility in the admin; a refresh never overwrites them.

Writes are the ``catalogue_*`` services; ``model_list`` / ``model_get`` / ``model_prices`` read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DateTimeField, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import CatalogueModel, ModelProvider, ModelSource, ModelType, ProviderKind
from agents.providers import OFFLINE_PROVIDER, split_model_id
from agents.providers.base import ProviderError
from agents.providers.offline import OFFLINE_MODEL

logger = logging.getLogger(__name__)

LOCAL_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"

BUILTIN_MODELS: tuple[dict[str, Any], ...] = (
    {
        "model_id": f"{OFFLINE_PROVIDER}/{OFFLINE_MODEL}",
        "type": ModelType.CHAT,
        "context_length": 8192,
        "owned_by": "aihub",
    },
    {
        # The knowledge app's bundled sentence-transformers embedder (no network).
        "model_id": LOCAL_EMBEDDING_MODEL,
        "type": ModelType.EMBEDDING,
        "context_length": 256,
        "dimensions": 384,
        "owned_by": "sentence-transformers",
    },
)
"""Models on offer without any provider row; free until an operator prices them."""

_EMBEDDING_HINTS = ("embed",)
_IMAGE_HINTS = ("dall-e", "image")
_AUDIO_HINTS = ("whisper", "tts", "transcribe", "audio", "speech")
_OTHER_HINTS = ("moderation", "rerank")


def guess_type(name: str) -> ModelType:
    """A first guess from the name (model lists do not say); operators correct it in the admin."""
    lowered = name.lower()
    if any(hint in lowered for hint in _EMBEDDING_HINTS):
        return ModelType.EMBEDDING
    if any(hint in lowered for hint in _IMAGE_HINTS):
        return ModelType.IMAGE
    if any(hint in lowered for hint in _AUDIO_HINTS):
        return ModelType.AUDIO
    if any(hint in lowered for hint in _OTHER_HINTS):
        return ModelType.OTHER
    return ModelType.CHAT


# --- Writes ---------------------------------------------------------------------------------------------------


def catalogue_ensure_builtins() -> None:
    """Create the built-in models' rows once (later changes are the operators')."""
    if CatalogueModel.objects.filter(source=ModelSource.BUILTIN).count() >= len(BUILTIN_MODELS):
        return
    rows = []
    for spec in BUILTIN_MODELS:
        provider_name, name = split_model_id(spec["model_id"])
        rows.append(
            CatalogueModel(
                provider_name=provider_name,
                name=name,
                source=ModelSource.BUILTIN,
                input_price_per_million=Decimal(0),
                output_price_per_million=Decimal(0),
                last_seen_at=timezone.now(),
                **spec,
            )
        )
    # Two first readers at once: the unique model_id makes the second insert a no-op.
    CatalogueModel.objects.bulk_create(rows, ignore_conflicts=True)


def _listable(provider: ModelProvider) -> bool:
    return provider.enabled and provider.kind == ProviderKind.OPENAI


def catalogue_refresh(*, provider: ModelProvider, force: bool = False) -> bool:
    """Copy ``provider``'s model list into the catalogue; True when it was asked and answered.

    Without ``force`` only when the last ask is older than the TTL, and only by the caller whose conditional
    update claimed it. A failure keeps the rows (the last good copy) and records the error and since when.
    """
    if not _listable(provider):
        return False
    now = timezone.now()
    due = ModelProvider.objects.filter(pk=provider.pk)
    if not force:
        cutoff = now - timedelta(seconds=settings.AGENTS_MODEL_LIST_TTL_SECONDS)
        due = due.filter(Q(models_checked_at__isnull=True) | Q(models_checked_at__lt=cutoff))
    if not due.update(models_checked_at=now):
        return False
    from agents.providers.openai import OpenAIProvider

    try:
        listed = OpenAIProvider.from_row(provider).list_models(timeout=settings.AGENTS_MODEL_LIST_TIMEOUT_SECONDS)
    except ProviderError as exc:
        logger.warning("model list of provider %s failed: %s", provider.name, exc.detail)
        ModelProvider.objects.filter(pk=provider.pk).update(
            models_error=exc.detail[:500],
            models_stale_since=Coalesce(F("models_stale_since"), Value(now, output_field=DateTimeField())),
        )
        return False
    _store_listed(provider=provider, listed=listed, now=now)
    return True


@transaction.atomic
def _store_listed(*, provider: ModelProvider, listed: list[dict[str, Any]], now: Any) -> None:
    known = {row.name: row for row in CatalogueModel.objects.select_for_update().filter(provider=provider)}
    seen = set()
    new_rows = []
    for item in listed:
        name = item["id"][:250]
        seen.add(name)
        row = known.get(name)
        if row is None:
            new_rows.append(
                CatalogueModel(
                    model_id=f"{provider.name}/{name}",
                    provider=provider,
                    provider_name=provider.name,
                    name=name,
                    type=guess_type(name),
                    context_length=item.get("context_length"),
                    owned_by=item.get("owned_by", "")[:200],
                    last_seen_at=now,
                )
            )
            continue
        # What the operator set stays; only what the list knows better is updated.
        row.available, row.last_seen_at = True, now
        if row.context_length is None and item.get("context_length"):
            row.context_length = item["context_length"]
        row.save(update_fields=["available", "last_seen_at", "context_length", "updated_at"])
    CatalogueModel.objects.bulk_create(new_rows, ignore_conflicts=True)
    CatalogueModel.objects.filter(provider=provider, available=True).exclude(name__in=seen).update(
        available=False, updated_at=now
    )
    ModelProvider.objects.filter(pk=provider.pk).update(
        models_refreshed_at=now, models_stale_since=None, models_error=""
    )


OPERATOR_FIELDS = frozenset(
    {"type", "context_length", "dimensions", "input_price_per_million", "output_price_per_million", "visible"}
)
"""What operators set on a catalogue model (a refresh never overwrites them)."""


@transaction.atomic
def catalogue_model_update(*, model: CatalogueModel, **fields: Any) -> CatalogueModel:
    """Change what operators own (type, context length, dimensions, prices, visibility); ValueError otherwise."""
    unknown = set(fields) - OPERATOR_FIELDS
    if unknown:
        raise ValueError(f"Not an operator's field of a catalogue model: {', '.join(sorted(unknown))}.")
    for name in ("input_price_per_million", "output_price_per_million"):
        if fields.get(name) is not None and fields[name] < 0:
            raise ValidationError({name: "A price cannot be negative."})
    locked = CatalogueModel.objects.select_for_update().get(pk=model.pk)
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save()
    return locked


def catalogue_refresh_due() -> None:
    """What a catalogue read does first: the built-ins exist, and every list older than the TTL is asked."""
    catalogue_ensure_builtins()
    for provider in ModelProvider.objects.filter(enabled=True, kind=ProviderKind.OPENAI):
        catalogue_refresh(provider=provider)


# --- Reads ----------------------------------------------------------------------------------------------------


def model_list(*, include_hidden: bool = False) -> QuerySet[CatalogueModel]:
    """Catalogue models of enabled providers (and the built-ins), by type then id."""
    models = CatalogueModel.objects.select_related("provider").filter(
        Q(provider__isnull=True) | Q(provider__enabled=True)
    )
    if not include_hidden:
        models = models.filter(visible=True)
    return models.order_by("type", "model_id")


def model_get(*, model_id: str, include_hidden: bool = False) -> CatalogueModel | None:
    return model_list(include_hidden=include_hidden).filter(model_id=model_id).first()


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    refreshed_at: Any
    stale_since: Any
    error: str

    @property
    def stale(self) -> bool:
        return self.stale_since is not None


def provider_statuses() -> list[ProviderStatus]:
    """How fresh each listed provider's copy is (the built-ins are always fresh and not listed)."""
    return [
        ProviderStatus(p.name, p.models_refreshed_at, p.models_stale_since, p.models_error)
        for p in ModelProvider.objects.filter(enabled=True, kind=ProviderKind.OPENAI).order_by("name")
    ]


@dataclass(frozen=True)
class Prices:
    """Per million tokens; None when no price is set (such usage costs nothing, and says so: ``priced``)."""

    input: Decimal | None
    output: Decimal | None

    @property
    def priced(self) -> bool:
        return self.input is not None or self.output is not None

    def cost(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        million = Decimal(1_000_000)
        return (Decimal(input_tokens) * (self.input or 0) + Decimal(output_tokens) * (self.output or 0)) / million


def model_prices(model_id: str) -> Prices:
    """The catalogue's prices of a model id, hidden or not (a hidden model's usage still costs)."""
    if not model_id:
        return Prices(None, None)
    row = (
        CatalogueModel.objects.filter(model_id=model_id)
        .values_list("input_price_per_million", "output_price_per_million")
        .first()
    )
    if row is None and model_id in {spec["model_id"] for spec in BUILTIN_MODELS}:
        return Prices(Decimal(0), Decimal(0))
    return Prices(*row) if row is not None else Prices(None, None)
