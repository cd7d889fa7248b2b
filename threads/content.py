"""Message content blocks, validated with pydantic (the same models describe them in the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextBlock(_Block):
    type: Literal["text"] = "text"
    text: str = Field(max_length=200_000)


class ImageBlock(_Block):
    type: Literal["image"] = "image"
    file_id: str | None = None
    url: str | None = Field(default=None, max_length=2000)
    detail: Literal["auto", "low", "high"] = "auto"
    # Filled in from the file (threads.File) when a message attaches one.
    name: str = ""
    media_type: str = ""


class FileBlock(_Block):
    type: Literal["file"] = "file"
    file_id: str
    name: str = ""
    media_type: str = ""


class ToolCallBlock(_Block):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Block):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: Any = None
    is_error: bool = False


class CitationBlock(_Block):
    type: Literal["citation"] = "citation"
    document_id: str
    chunk_id: str
    text: str = ""
    score: float | None = None
    title: str = ""


ContentBlock = Annotated[
    TextBlock | ImageBlock | FileBlock | ToolCallBlock | ToolResultBlock | CitationBlock,
    Field(discriminator="type"),
]
content_adapter: TypeAdapter[list[ContentBlock]] = TypeAdapter(list[ContentBlock])


def validate_content(content: Any) -> list[dict[str, Any]]:
    """Validated blocks as plain JSON; a bare string is shorthand for one text block."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = content_adapter.validate_python(content)
    return [block.model_dump(mode="json", exclude_none=True) for block in blocks]


def text_of(content: list[dict[str, Any]]) -> str:
    return "\n".join(block["text"] for block in content if block.get("type") == "text")


def file_ids_of(content: list[dict[str, Any]]) -> list[str]:
    """The ids of the files (threads.File) image and file blocks refer to, in order, without repeats."""
    ids = (block.get("file_id") for block in content if block.get("type") in ("image", "file"))
    return list(dict.fromkeys(file_id for file_id in ids if file_id))
