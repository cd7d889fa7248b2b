"""Resolving a model id ``<provider>/<model>`` to a provider that can stream it."""

from __future__ import annotations

from agents.providers.base import ChatProvider, ClientConfig, ProviderError
from agents.providers.offline import OFFLINE_MODEL, OfflineProvider

OFFLINE_PROVIDER = "offline"
DEFAULT_MODEL = f"{OFFLINE_PROVIDER}/{OFFLINE_MODEL}"


def split_model_id(model_id: str) -> tuple[str, str]:
    provider, _, model = (model_id or DEFAULT_MODEL).partition("/")
    if not provider or not model:
        raise ProviderError(f"Model id {model_id!r} is not of the form <provider>/<model>.", status=400)
    return provider, model


def provider_for(model_id: str, *, client_config: ClientConfig | None = None) -> tuple[ChatProvider, str]:
    """The provider and the provider's own model name for a model id, or ProviderError.

    With the request's ``client_config``, the model name goes to the client's endpoint with the client's key
    instead of to the operator's provider (the provider part of the id then only names nothing).
    """
    from agents.models import ModelProvider, ProviderKind

    provider_name, model = split_model_id(model_id)
    if client_config is not None:
        from agents.providers.openai import OpenAIProvider

        return OpenAIProvider.from_client_config(client_config), model
    if provider_name == OFFLINE_PROVIDER:
        return OfflineProvider(), model
    row = ModelProvider.objects.filter(name=provider_name, enabled=True).first()
    if row is None:
        raise ProviderError(f"No enabled model provider named {provider_name!r}.", status=400)
    if row.kind == ProviderKind.OFFLINE:
        return OfflineProvider(), model
    from agents.providers.openai import OpenAIProvider

    return OpenAIProvider.from_row(row), model
