"""Knowledge API bodies. Input serializers only parse; knowledge.services and knowledge.search validate."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from aihub.access.api.serializers import StrictSerializer
from aihub.api.parsers import NULL_CHARACTER_CODE, NULL_CHARACTER_MESSAGE, NullCharacter, load_json
from knowledge.models import Chunk, Collection, Document
from knowledge.search import DEFAULT_ALPHA, DEFAULT_CANDIDATES, MAX_CANDIDATES, MAX_QUERY_CHARS, MAX_TOP_K, MODES

COLLECTION_EXAMPLE: dict[str, Any] = {
    "id": "0b6f9b0e-4d1c-4a57-9f3e-2a6c1d7e8f90",
    "slug": "handbook",
    "name": "Employee handbook",
    "description": "Policies and how-tos.",
    "embedder": "local/all-MiniLM-L6-v2",
    "dimensions": 384,
    "chunk_size": 200,
    "chunk_overlap": 40,
    "document_count": 42,
    "created_at": "2025-01-01T12:00:00Z",
    "updated_at": "2025-01-01T12:00:00Z",
}
DOCUMENT_EXAMPLE: dict[str, Any] = {
    "id": "5d4c3b2a-1111-4e2f-8a9b-0c1d2e3f4a5b",
    "collection": "handbook",
    "title": "travel-policy.pdf",
    "source": "policies/travel-policy.pdf",
    "media_type": "application/pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "metadata": {"department": "hr", "year": 2025},
    "status": "ready",
    "error": "",
    "chunk_count": 17,
    "created_at": "2025-01-02T08:00:00Z",
    "updated_at": "2025-01-02T08:00:04Z",
    "ingested_at": "2025-01-02T08:00:04Z",
}
HIT_EXAMPLE: dict[str, Any] = {
    "chunk_id": 1234,
    "document": {"id": DOCUMENT_EXAMPLE["id"], "title": "travel-policy.pdf", "metadata": {"department": "hr"}},
    "collection": "handbook",
    "text": "Economy class is booked for flights under six hours.",
    "location": {"page": 3, "heading_path": ["Travel", "Flights"], "start": 5120, "end": 5172},
    "score": 0.032522,
    "vector_score": 0.71342,
    "keyword_score": 0.4,
    "vector_rank": 1,
    "keyword_rank": 2,
}


@extend_schema_serializer(examples=[OpenApiExample("A collection", value=COLLECTION_EXAMPLE, response_only=True)])
class CollectionSerializer(serializers.ModelSerializer):
    document_count = serializers.SerializerMethodField()

    class Meta:
        model = Collection
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "embedder",
            "dimensions",
            "chunk_size",
            "chunk_overlap",
            "document_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_document_count(self, collection: Collection) -> int:
        return int(getattr(collection, "document_count", None) or collection.documents.count())


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "With the local model",
            request_only=True,
            value={"slug": "handbook", "name": "Employee handbook", "chunk_size": 200, "chunk_overlap": 40},
        )
    ]
)
class CollectionCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(
        max_length=63, help_text="Unique in the tenant; names the collection in URLs and rules."
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    embedder = serializers.CharField(
        max_length=200, required=False, help_text="`local/all-MiniLM-L6-v2` (default) or `openai/<model>`; fixed."
    )
    chunk_size = serializers.IntegerField(required=False, default=200, help_text="Tokens per chunk at most.")
    chunk_overlap = serializers.IntegerField(required=False, default=40, help_text="Tokens repeated between chunks.")


@extend_schema_serializer(examples=[OpenApiExample("Rename", request_only=True, value={"name": "Handbook 2025"})])
class CollectionUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)


@extend_schema_serializer(examples=[OpenApiExample("A document", value=DOCUMENT_EXAMPLE, response_only=True)])
class DocumentSerializer(serializers.ModelSerializer):
    collection = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = Document
        fields = [
            "id",
            "collection",
            "title",
            "source",
            "media_type",
            "size",
            "sha256",
            "metadata",
            "status",
            "error",
            "chunk_count",
            "created_at",
            "updated_at",
            "ingested_at",
        ]
        read_only_fields = fields


class DocumentSubmittedSerializer(DocumentSerializer):
    outcome = serializers.SerializerMethodField(help_text="added, replaced (same source) or unchanged (same bytes).")

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "outcome"]
        read_only_fields = fields

    def get_outcome(self, document: Document) -> str:
        return str(self.context.get("outcome", "added"))


class _MetadataJSONField(serializers.JSONField):
    """An object; in a multipart form, a JSON string."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = load_json(data)
            except NullCharacter as exc:
                raise serializers.ValidationError(NULL_CHARACTER_MESSAGE, code=NULL_CHARACTER_CODE) from exc
            except ValueError as exc:
                raise serializers.ValidationError("Must be a JSON object.") from exc
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return data


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "From text",
            request_only=True,
            value={
                "text": "# Travel\n\nEconomy class is booked for flights under six hours.",
                "title": "Travel policy",
                "media_type": "text/markdown",
                "source": "wiki/travel",
                "metadata": {"department": "hr", "year": 2025},
            },
        )
    ]
)
class DocumentCreateSerializer(StrictSerializer):
    file = serializers.FileField(
        required=False, help_text="Multipart: the document (txt, md, html, pdf, docx, csv, json)."
    )
    text = serializers.CharField(required=False, trim_whitespace=False, help_text="JSON: the document's text instead.")
    title = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    source = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.source
        max_length=1000, required=False, allow_blank=True, default="", help_text="Another upload with it replaces this."
    )
    media_type = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Of `text`: text/plain (default), text/markdown, text/html, text/csv or application/json.",
    )
    metadata = _MetadataJSONField(required=False, default=dict, help_text="An object (a JSON string in multipart).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if ("file" in attrs) == ("text" in attrs):
            raise serializers.ValidationError({"file": "Send either a file (multipart) or text, not both or neither."})
        return attrs


@extend_schema_serializer(
    examples=[
        OpenApiExample("Retitle", request_only=True, value={"title": "Travel policy 2025", "metadata": {"year": 2025}})
    ]
)
class DocumentUpdateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=500, required=False)
    metadata = _MetadataJSONField(required=False)


class DocumentListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False)
    title = serializers.CharField(required=False, max_length=500, help_text="Part of the title, any case.")
    metadata = _MetadataJSONField(required=False, help_text='Equality filters as JSON, e.g. {"department": "hr"}.')


class _SearchFields(StrictSerializer):
    query = serializers.CharField(max_length=MAX_QUERY_CHARS, trim_whitespace=True)
    mode = serializers.ChoiceField(choices=list(MODES), default="hybrid")
    top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=5)
    filters = serializers.DictField(
        required=False,
        default=dict,
        help_text='On document metadata (and document_id, media_type, title): `{"department": "hr"}`, '
        '`{"year": {"gte": 2020, "lt": 2025}}`, `{"tag": {"in": ["a", "b"]}}`.',
    )
    alpha = serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text=f"Hybrid only: the vector leg's weight in the fusion, the keyword leg's is 1 - alpha "
        f"(1: meaning only, 0: words only; default {DEFAULT_ALPHA}).",
    )
    candidates = serializers.IntegerField(
        min_value=1,
        max_value=MAX_CANDIDATES,
        required=False,
        help_text=f"Hybrid only: how many chunks each leg contributes to the fusion, from top_k to {MAX_CANDIDATES} "
        f"(default the larger of 5 x top_k and {DEFAULT_CANDIDATES}); deeper finds more, slower.",
    )


SEARCH_EXAMPLE = {
    "query": "which class do I book for a four hour flight?",
    "mode": "hybrid",
    "top_k": 5,
    "filters": {"department": "hr", "year": {"gte": 2024}},
}


@extend_schema_serializer(
    examples=[
        OpenApiExample("Hybrid with filters", request_only=True, value=SEARCH_EXAMPLE),
        OpenApiExample(
            "Hybrid leaning on words, deeper",
            request_only=True,
            value={"query": "EU-261 compensation for a delayed flight", "alpha": 0.3, "candidates": 200, "top_k": 10},
        ),
    ]
)
class SearchSerializer(_SearchFields):
    pass


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Two collections", request_only=True, value={**SEARCH_EXAMPLE, "collections": ["handbook", "wiki"]}
        )
    ]
)
class TenantSearchSerializer(_SearchFields):
    collections = serializers.ListField(
        child=serializers.SlugField(max_length=63),
        required=False,
        max_length=50,
        help_text="Collection slugs; all the collections you can see when left out.",
    )


class HitDocumentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    metadata = serializers.JSONField()


class HitSerializer(serializers.Serializer):
    chunk_id = serializers.IntegerField()
    document = HitDocumentSerializer()
    collection = serializers.CharField()
    text = serializers.CharField()
    location = serializers.JSONField(help_text="page, heading_path, start and end (offsets in the extracted text).")
    score = serializers.FloatField(help_text="What hits are ordered by: cosine, keyword rank or fused RRF score.")
    vector_score = serializers.FloatField(allow_null=True)
    keyword_score = serializers.FloatField(allow_null=True)
    vector_rank = serializers.IntegerField(allow_null=True)
    keyword_rank = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Hits",
            response_only=True,
            value={"query": SEARCH_EXAMPLE["query"], "mode": "hybrid", "hits": [HIT_EXAMPLE]},
        )
    ]
)
class SearchResultSerializer(serializers.Serializer):
    query = serializers.CharField()
    mode = serializers.CharField()
    hits = HitSerializer(many=True)


CHUNK_EXAMPLE: dict[str, Any] = {
    "id": 1234,
    "document": DOCUMENT_EXAMPLE["id"],
    "position": 7,
    "text": "Economy class is booked for flights under six hours.",
    "token_count": 11,
    "location": HIT_EXAMPLE["location"],
}


class ChunkLocationSerializer(serializers.Serializer):
    page = serializers.IntegerField(allow_null=True, help_text="The page (PDF), or null.")
    heading_path = serializers.ListField(child=serializers.CharField(), help_text="The headings above the chunk.")
    start = serializers.IntegerField(help_text="Character offset in the extracted text.")
    end = serializers.IntegerField(help_text="Where it ends (exclusive).")


@extend_schema_serializer(examples=[OpenApiExample("A chunk", value=CHUNK_EXAMPLE, response_only=True)])
class ChunkSerializer(serializers.ModelSerializer):
    document = serializers.UUIDField(source="document_id", help_text="The document it is part of.")
    location = serializers.SerializerMethodField()

    class Meta:
        model = Chunk
        fields = ["id", "document", "position", "text", "token_count", "location"]
        read_only_fields = fields

    @extend_schema_field(ChunkLocationSerializer)
    def get_location(self, chunk: Chunk) -> dict[str, Any]:
        return chunk.location()
