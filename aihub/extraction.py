"""Text out of uploaded bytes: what a file is (``sniff_media_type``) and what it says (``extract_text``).

Pure functions, no models and no settings: message attachments (threads) and knowledge ingestion both use them.
``Extracted.sections`` tell where each part of the text came from (a PDF page, a heading path) with character
offsets into ``Extracted.text``, so a chunk cut from the text can cite its page or heading.

Every failure is an ``ExtractionError`` with a ``code`` (``unsupported``, ``corrupt``, ``encrypted``,
``too_large``); the parsers' own exceptions never escape, because a broken upload is bad input, not a crash.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
CSV = "text/csv"
JSON = "application/json"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
WEBP = "image/webp"
OCTET_STREAM = "application/octet-stream"

TEXT_MEDIA_TYPES = frozenset({PLAIN, MARKDOWN, HTML, CSV, JSON, PDF, DOCX})
"""What ``extract_text`` reads."""
IMAGE_MEDIA_TYPES = frozenset({PNG, JPEG, GIF, WEBP})
"""What ``sniff_media_type`` recognises as an image (for vision models; no text in them)."""

MAX_UNPACKED_BYTES = 200 * 1024 * 1024
"""A .docx is a zip: more than this once unpacked is refused (a zip bomb), whatever its size on the wire."""

_ALIASES = {
    "text/x-markdown": MARKDOWN,
    "text/md": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/csv": CSV,
    "text/json": JSON,
    "image/jpg": JPEG,
}
_TEXT_EXTENSIONS = {
    "txt": PLAIN,
    "text": PLAIN,
    "log": PLAIN,
    "md": MARKDOWN,
    "markdown": MARKDOWN,
    "html": HTML,
    "htm": HTML,
    "xhtml": HTML,
    "csv": CSV,
    "json": JSON,
}


class ExtractionError(Exception):
    """The bytes could not be read as the media type says; ``code`` tells why, the message says it to a user."""

    def __init__(self, message: str, *, code: Literal["unsupported", "corrupt", "encrypted", "too_large"]) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Section:
    """A part of ``Extracted.text``: ``text == extracted.text[start:end]``.

    ``page`` is the 1-based PDF page; ``heading_path`` the headings above this part (Markdown, HTML, .docx),
    outermost first, the section's own heading last; empty before the first heading.
    """

    text: str
    start: int
    end: int
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "page": self.page,
            "heading_path": list(self.heading_path),
        }


@dataclass
class Extracted:
    """The text of a file and where its parts came from. ``text`` may be empty (a scanned PDF has no text)."""

    text: str
    media_type: str
    sections: list[Section] = field(default_factory=list)


def normalize_media_type(media_type: str | None) -> str:
    """``Text/HTML; charset=utf-8`` → ``text/html``; known aliases to their standard name."""
    base = (media_type or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def is_image(media_type: str) -> bool:
    return normalize_media_type(media_type) in IMAGE_MEDIA_TYPES


# --- What is it? ------------------------------------------------------------------------------------------------


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


def _decodes(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    # NUL and most other C0 controls do not occur in text files; binary data that happens to decode does.
    controls = sum(1 for c in text[:4096] if ord(c) < 32 and c not in "\t\n\r\f\v")
    return None if controls else text


def sniff_media_type(data: bytes, filename: str | None = None) -> str:
    """The media type of ``data``: by its magic bytes (PDF, .docx, PNG, JPEG, GIF, WebP), else — for UTF-8 text
    only — by the file name's extension, else by the text's shape (JSON, HTML) or ``text/plain``; binary data
    nothing recognises is ``application/octet-stream``.

    A client's declared type is never trusted alone: a ``report.pdf`` that is not a PDF is not called one.
    """
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"PK\x03\x04"):
        return DOCX if _is_docx(data) else OCTET_STREAM
    text = _decodes(data)
    if text is None:
        return OCTET_STREAM
    extension = (filename or "").rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in (filename or "") else ""
    if extension in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[extension]
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            return JSON
    if re.match(r"<!doctype\s+html|<html[\s>]", stripped[:100], re.IGNORECASE):
        return HTML
    return PLAIN


# --- What does it say? ------------------------------------------------------------------------------------------


class _Builder:
    """Joins blocks (headings and paragraphs) into one text with a section per heading."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []
        self.headings: list[tuple[int, str]] = []
        self._open: tuple[int, list[str]] | None = None  # (start, heading path) of the section being filled

    def _append(self, text: str) -> int:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def _close(self) -> None:
        if self._open is not None:
            start, path = self._open
            self.sections.append(Section(text="", start=start, end=self.length, heading_path=path))
            self._open = None

    def heading(self, level: int, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            return
        self._close()
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        self.headings.append((level, title))
        start = self._append(title)
        self._open = (start, [name for _, name in self.headings])

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        start = self._append(text)
        if self._open is None:
            self._open = (start, [name for _, name in self.headings])

    def build(self, media_type: str) -> Extracted:
        self._close()
        text = "".join(self.parts)
        for section in self.sections:
            section.text = text[section.start : section.end]
        return Extracted(text=text, media_type=media_type, sections=self.sections)


def _decoded(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(
            f"The file is not UTF-8 text (invalid byte at position {exc.start}).", code="corrupt"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _whole(text: str, media_type: str) -> Extracted:
    sections = [Section(text=text, start=0, end=len(text))] if text.strip() else []
    return Extracted(text=text, media_type=media_type, sections=sections)


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def _markdown(data: bytes) -> Extracted:
    """The Markdown source as it is, a section per ATX (``#``) or setext (underlined) heading."""
    text = _decoded(data)
    lines = text.split("\n")
    offsets: list[int] = []
    position = 0
    for line in lines:
        offsets.append(position)
        position += len(line) + 1
    headings: list[tuple[int, int, str]] = []  # (offset, level, title)
    fence: str | None = None
    for index, line in enumerate(lines):
        marker = _FENCE.match(line)
        if marker:
            if fence is None:
                fence = marker.group(1)[0]
            elif marker.group(1)[0] == fence:
                fence = None
            continue
        if fence is not None:
            continue
        atx = _ATX.match(line)
        if atx:
            headings.append((offsets[index], len(atx.group(1)), atx.group(2).strip()))
            continue
        underline = _SETEXT.match(line)
        previous = lines[index - 1].strip() if index else ""
        if underline and previous and not _ATX.match(lines[index - 1]) and not _FENCE.match(lines[index - 1]):
            if underline.group(1)[0] == "-" and index >= 2 and lines[index - 2].strip():
                continue  # "---" under a paragraph of several lines: read as a rule, not a heading
            level = 1 if underline.group(1)[0] == "=" else 2
            headings.append((offsets[index - 1], level, previous))
    sections: list[Section] = []
    boundaries = [(0, 0, ""), *headings]
    stack: list[tuple[int, str]] = []
    for position_index, (start, level, title) in enumerate(boundaries):
        end = boundaries[position_index + 1][0] if position_index + 1 < len(boundaries) else len(text)
        if position_index:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        body = text[start:end]
        if body.strip():
            sections.append(Section(text=body, start=start, end=end, heading_path=[t for _, t in stack]))
    return Extracted(text=text, media_type=MARKDOWN, sections=sections)


_HTML_DROP = ("script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object")
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_BLOCKS = frozenset(
    [
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "pre",
        "blockquote",
        "table",
        "tr",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "aside",
        "dl",
        "dt",
        "dd",
        "figure",
        "figcaption",
        "caption",
        "address",
        "details",
        "summary",
        "body",
        "br",
        "hr",
    ]
)


def _html(data: bytes) -> Extracted:
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    soup = BeautifulSoup(_decoded(data), "html.parser")
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    builder = _Builder()
    inline: list[str] = []

    def flush() -> None:
        builder.paragraph(" ".join("".join(inline).split()))
        inline.clear()

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                inline.append(str(child))
            elif isinstance(child, Tag):
                name = child.name.lower()
                if name in _HTML_HEADINGS:
                    flush()
                    builder.heading(_HTML_HEADINGS[name], child.get_text(" "))
                elif name in ("td", "th"):
                    inline.append(" ")
                    walk(child)
                    inline.append(" |")
                elif name in _HTML_BLOCKS:
                    flush()
                    walk(child)
                    flush()
                else:
                    walk(child)

    walk(soup)
    flush()
    return builder.build(HTML)


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ExtractionError("The .docx file is damaged (not a readable zip archive).", code="corrupt") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ExtractionError(
            f"The .docx file unpacks to {unpacked} bytes, more than the {MAX_UNPACKED_BYTES} allowed.",
            code="too_large",
        )


def _docx_blocks(document: Any) -> Iterator[tuple[int | None, str]]:
    """(heading level or None, text) for each paragraph and table row, in document order."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            style = (item.style.name if item.style is not None else "") or ""
            level: int | None = None
            if style == "Title":
                level = 1
            elif style.startswith("Heading"):
                suffix = style.removeprefix("Heading").strip()
                level = int(suffix) if suffix.isdigit() else 1
            yield level, item.text
        elif isinstance(item, Table):
            for row in item.rows:
                cells = list(dict.fromkeys(cell.text.strip() for cell in row.cells))  # merged cells repeat
                yield None, " | ".join(cell for cell in cells if cell)


def _docx(data: bytes) -> Extracted:
    _check_zip(data)
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
    except ExtractionError:
        raise
    except Exception:  # python-docx raises KeyError, lxml errors, ValueError...: all mean a broken file
        raise ExtractionError("The .docx file is damaged or not a Word document.", code="corrupt") from None
    builder = _Builder()
    for level, text in blocks:
        if level is None:
            builder.paragraph(text)
        else:
            builder.heading(level, text)
    return builder.build(DOCX)


def _pdf(data: bytes) -> Extracted:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # pypdf logs (not raises) about many recoverable defects; the caller learns what matters from the result.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only to restrict printing; those open.
            try:
                opened = bool(reader.decrypt(""))
            except Exception:
                opened = False
            if not opened:
                raise ExtractionError("The PDF is encrypted with a password.", code="encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractionError:
        raise
    except FileNotDecryptedError:
        raise ExtractionError("The PDF is encrypted with a password.", code="encrypted") from None
    except Exception:  # PdfReadError, struct errors, RecursionError in a crafted file...
        raise ExtractionError("The PDF is damaged or not a PDF.", code="corrupt") from None
    parts: list[str] = []
    sections: list[Section] = []
    length = 0
    for number, page_text in enumerate(pages, start=1):
        page_text = page_text.replace("\r\n", "\n").replace("\x00", "").strip()
        if not page_text:
            continue  # a blank or scanned page: nothing to cite, and no empty section
        if parts:
            parts.append("\n\n")
            length += 2
        sections.append(Section(text=page_text, start=length, end=length + len(page_text), page=number))
        parts.append(page_text)
        length += len(page_text)
    return Extracted(text="".join(parts), media_type=PDF, sections=sections)


def _csv(data: bytes) -> Extracted:
    text = _decoded(data)
    try:
        for _ in csv.reader(io.StringIO(text), strict=True):
            pass
    except csv.Error as exc:
        raise ExtractionError(f"The CSV file cannot be parsed: {exc}.", code="corrupt") from None
    return _whole(text, CSV)


def _json(data: bytes) -> Extracted:
    text = _decoded(data)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ExtractionError(f"The JSON file cannot be parsed: {exc}.", code="corrupt") from None
    # Indented, so a chunk of it is readable on its own.
    return _whole(json.dumps(value, indent=2, ensure_ascii=False), JSON)


def extract_text(data: bytes, media_type: str) -> Extracted:
    """The text of ``data`` read as ``media_type`` (use ``sniff_media_type`` to know it), with its sections.

    Supported: text/plain, text/markdown, text/html (script, style and nav dropped), application/pdf (a
    section per page), .docx (headings), text/csv, application/json. Raises ExtractionError otherwise, or when
    the file is damaged or encrypted.
    """
    kind = normalize_media_type(media_type)
    if kind == PLAIN:
        return _whole(_decoded(data), PLAIN)
    if kind == MARKDOWN:
        return _markdown(data)
    if kind == HTML:
        return _html(data)
    if kind == PDF:
        return _pdf(data)
    if kind == DOCX:
        return _docx(data)
    if kind == CSV:
        return _csv(data)
    if kind == JSON:
        return _json(data)
    raise ExtractionError(f"No text can be extracted from {kind or 'an unknown type'}.", code="unsupported")
