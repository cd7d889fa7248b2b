"""Operators' view of knowledge: collections (with a search box that shows hits and scores) and documents
(upload, status, re-ingest and delete actions). Every write goes through knowledge.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from aihub.access.admin import ServiceModelAdmin
from knowledge import services
from knowledge.models import Chunk, Collection, Document
from knowledge.search import MODES, SearchError, search


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ("tenant", "slug", "name", "description", "embedder", "chunk_size", "chunk_overlap")


class SearchForm(forms.Form):
    query = forms.CharField(max_length=4000, widget=forms.TextInput(attrs={"size": 80}))
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES], initial="hybrid")
    top_k = forms.IntegerField(min_value=1, max_value=100, initial=10)


@admin.register(Collection)
class CollectionAdmin(ServiceModelAdmin):
    form = CollectionForm
    list_display = ("slug", "name", "tenant", "embedder", "dimensions", "document_count", "search_link")
    list_filter = ("tenant", "embedder")
    search_fields = ("slug", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Collection | None = None) -> Any:
        # Fixed once created: manage.py reembed changes them and re-ingests every document.
        return ("tenant", "slug", "embedder", "chunk_size", "chunk_overlap", "dimensions") if obj else ()

    @admin.display(description="documents")
    def document_count(self, collection: Collection) -> int:
        return collection.documents.count()

    @admin.display(description="search")
    def search_link(self, collection: Collection) -> str:
        return format_html(
            '<a href="{}">search</a>', reverse("admin:knowledge_collection_search", args=[collection.pk])
        )

    def save_model(self, request: HttpRequest, obj: Collection, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.collection_update(collection=obj, name=data["name"], description=data["description"])
            return
        created = services.collection_create(
            tenant=data["tenant"],
            slug=data["slug"],
            name=data["name"],
            description=data["description"],
            embedder=data["embedder"] or None,
            chunk_size=data["chunk_size"],
            chunk_overlap=data["chunk_overlap"],
        )
        obj.pk = created.pk
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Collection) -> None:
        services.collection_delete(collection=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            services.collection_delete(collection=collection)

    def get_urls(self) -> list[URLPattern]:
        search_view = self.admin_site.admin_view(self.search_view)
        return [path("<uuid:pk>/search/", search_view, name="knowledge_collection_search"), *super().get_urls()]

    def search_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        """Hit-testing: run a query against the collection and show the hits with their scores."""
        if not self.has_view_permission(request):
            raise PermissionError
        collection = get_object_or_404(Collection, pk=pk)
        form = SearchForm(request.GET or None)
        hits: list[Any] = []
        if form.is_valid():
            try:
                hits = search(collections=[collection], **form.cleaned_data)
            except SearchError as exc:
                form.add_error(None, str(exc))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Search {collection.slug}",
            "opts": self.model._meta,
            "collection": collection,
            "form": form,
            "hits": hits,
            "searched": form.is_bound,
        }
        return TemplateResponse(request, "admin/knowledge/collection/search.html", context)


class DocumentAddForm(forms.ModelForm):
    upload = forms.FileField(help_text="txt, md, html, pdf, docx, csv or json; the type is sniffed from the bytes.")
    metadata = forms.JSONField(required=False, initial=dict)
    title = forms.CharField(max_length=500, required=False, help_text="The file name when left empty.")

    class Meta:
        model = Document
        fields = ("collection", "title", "source", "metadata")


class DocumentChangeForm(forms.ModelForm):
    class Meta:
        model = Document
        fields = ("title", "metadata")


class ChunkInline(admin.TabularInline):
    model = Chunk
    fields = ("position", "text", "token_count", "page", "heading_path", "start", "end")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    show_change_link = False


@admin.register(Document)
class DocumentAdmin(ServiceModelAdmin):
    list_display = ("title", "collection", "status", "media_type", "size", "chunk_count", "created_at")
    list_filter = ("status", "media_type", "collection")
    list_select_related = ("collection",)
    search_fields = ("title", "source", "sha256")
    actions = ("reingest", "delete_documents")
    inlines = (ChunkInline,)

    def get_inlines(self, request: HttpRequest, obj: Document | None = None) -> Any:
        return self.inlines if obj else ()

    def get_form(self, request: HttpRequest, obj: Document | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = DocumentChangeForm if obj else DocumentAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Document | None = None) -> Any:
        if obj is None:
            return ("collection", "upload", "title", "source", "metadata")
        return ("title", "metadata", "collection", "status", "error", "media_type", "size", "sha256", "chunk_count")

    def get_readonly_fields(self, request: HttpRequest, obj: Document | None = None) -> Any:
        return ("collection", "status", "error", "media_type", "size", "sha256", "chunk_count") if obj else ()

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # the service deletes chunks and files too
        return actions

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.document_update(document=obj, title=data["title"], metadata=data["metadata"])
            return
        upload = data["upload"]
        try:
            submitted = services.document_submit(
                collection=data["collection"],
                content=upload.read(),
                filename=upload.name,
                title=data["title"],
                source=data["source"],
                metadata=data["metadata"] or {},
            )
        except (services.UnsupportedDocument, services.DocumentTooLarge) as exc:
            raise ValidationError(str(exc)) from exc
        obj.pk = submitted.document.pk
        obj._state.adding = False
        if submitted.outcome == "unchanged":
            self.message_user(request, "The same file is already in the collection.", messages.WARNING)

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj)

    @admin.action(description="Ingest selected documents again", permissions=["change"])
    def reingest(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_reingest(document=document)
        self.message_user(request, f"Queued {queryset.count()} document(s).", messages.SUCCESS)

    @admin.action(description="Delete selected documents (with chunks and files)", permissions=["delete"])
    def delete_documents(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        count = 0
        for document in queryset:
            services.document_delete(document=document)
            count += 1
        self.message_user(request, f"Deleted {count} document(s).", messages.SUCCESS)
