"""Cutting extracted text into chunks: token-aware, with overlap, keeping paragraphs and headings together.

A chunk never crosses a section (a PDF page, a heading's section), so it cites one place. Inside a section,
whole paragraphs are packed while they fit in ``size`` tokens; a paragraph too long alone is cut at sentence
ends, and a sentence too long (a huge single line) at word or character windows. The next chunk starts with the
last ``overlap`` tokens or so of the previous one. Chunk texts are slices of the extracted text, so their
``start``/``end`` offsets are exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aihub.extraction import Extracted

TokenCounter = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# Latin and CJK sentence ends (the full-width marks are U+FF01 and U+FF1F).
_SENTENCE_END = re.compile("(?<=[.!?\u3002\uff01\uff1f])\\s+")
_WORD = re.compile(r"\S+")
# A word longer than this (a base64 blob, a URL list without spaces) is cut by characters.
_MAX_WORD_CHARS = 100


@dataclass
class TextChunk:
    text: str
    start: int
    end: int
    token_count: int
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The non-blank pieces of ``text[start:end]`` between matches of ``pattern``, as absolute offsets."""
    position = start
    for match in pattern.finditer(text, start, end):
        if text[position : match.start()].strip():
            yield position, match.start()
        position = match.end()
    if text[position:end].strip():
        yield position, end


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


class _Chunker:
    def __init__(self, text: str, *, size: int, overlap: int, count_tokens: TokenCounter) -> None:
        self.text = text
        self.size = max(8, size)
        self.overlap = max(0, min(overlap, self.size // 2))
        self.count = count_tokens

    def units(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(start, end, tokens) pieces of a section no larger than ``size``: paragraphs, else sentences, else
        word windows, else character windows."""
        for p_start, p_end in _spans(_PARAGRAPH_BREAK, self.text, start, end):
            p_start, p_end = _trimmed(self.text, p_start, p_end)
            tokens = self.count(self.text[p_start:p_end])
            if tokens <= self.size:
                yield p_start, p_end, tokens
                continue
            for s_start, s_end in _spans(_SENTENCE_END, self.text, p_start, p_end):
                s_start, s_end = _trimmed(self.text, s_start, s_end)
                tokens = self.count(self.text[s_start:s_end])
                if tokens <= self.size:
                    yield s_start, s_end, tokens
                else:
                    yield from self._windows(s_start, s_end)

    def _windows(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        pieces: list[tuple[int, int]] = []
        for match in _WORD.finditer(self.text, start, end):
            for offset in range(match.start(), match.end(), _MAX_WORD_CHARS):
                pieces.append((offset, min(offset + _MAX_WORD_CHARS, match.end())))
        window_start: int | None = None
        window_end = start
        tokens = 0
        for p_start, p_end in pieces:
            piece_tokens = self.count(self.text[p_start:p_end])
            if window_start is not None and tokens + piece_tokens > self.size:
                yield window_start, window_end, tokens
                window_start, tokens = None, 0
            if window_start is None:
                window_start = p_start
            window_end = p_end
            tokens += piece_tokens
        if window_start is not None:
            yield window_start, window_end, tokens

    def overlap_start(self, chunk_start: int, chunk_end: int) -> int:
        """Where the next chunk starts so it repeats about ``overlap`` tokens of this one (at a word start)."""
        if not self.overlap:
            return chunk_end
        words = list(_WORD.finditer(self.text, chunk_start, chunk_end))
        tokens = 0
        start = chunk_end
        for match in reversed(words[1:]):
            tokens += self.count(match.group())
            if tokens > self.overlap:
                break
            start = match.start()
        return start

    def section(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """(start, end) of the chunks of one section."""
        current_start: int | None = None
        current_end = start
        tokens = 0
        for u_start, u_end, u_tokens in self.units(start, end):
            if current_start is not None and tokens + u_tokens > self.size:
                yield current_start, current_end
                carried = self.overlap_start(current_start, current_end)
                if carried < current_end and self.count(self.text[carried:u_end]) <= self.size:
                    current_start, tokens = carried, self.count(self.text[carried:current_end])
                else:
                    current_start, tokens = None, 0
            if current_start is None:
                current_start = u_start
            current_end = u_end
            tokens += u_tokens
        if current_start is not None:
            yield current_start, current_end


def chunk_text(extracted: Extracted, *, size: int, overlap: int, count_tokens: TokenCounter) -> list[TextChunk]:
    """The chunks of an extracted document, in reading order."""
    text = extracted.text
    chunker = _Chunker(text, size=size, overlap=overlap, count_tokens=count_tokens)
    sections = [(s.start, s.end, s.page, list(s.heading_path)) for s in extracted.sections] or [
        (0, len(text), None, [])
    ]
    chunks: list[TextChunk] = []
    for start, end, page, heading_path in sections:
        for c_start, c_end in chunker.section(start, end):
            piece = text[c_start:c_end]
            chunks.append(
                TextChunk(
                    text=piece,
                    start=c_start,
                    end=c_end,
                    token_count=count_tokens(piece),
                    page=page,
                    heading_path=heading_path,
                )
            )
    return chunks
