from __future__ import annotations

import itertools

from aihub.extraction import extract_text
from knowledge.chunking import chunk_text
from knowledge.embedders import Embedder


def words(text: str) -> int:
    return len(text.split())


def test_short_paragraphs_are_packed_together_and_offsets_are_exact() -> None:
    extracted = extract_text(b"One two three.\n\nFour five six.\n\nSeven eight.", "text/plain")
    chunks = chunk_text(extracted, size=50, overlap=0, count_tokens=words)
    assert len(chunks) == 1
    assert chunks[0].text == "One two three.\n\nFour five six.\n\nSeven eight."
    assert extracted.text[chunks[0].start : chunks[0].end] == chunks[0].text


def test_paragraphs_that_do_not_fit_start_a_new_chunk_with_overlap() -> None:
    paragraphs = [" ".join(f"p{p}w{i}" for i in range(30)) for p in range(4)]
    extracted = extract_text("\n\n".join(paragraphs).encode(), "text/plain")
    chunks = chunk_text(extracted, size=40, overlap=5, count_tokens=words)
    assert all(c.token_count <= 40 for c in chunks)
    assert len(chunks) == 4
    # Each chunk after the first repeats the last words of the one before it.
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end
        assert after.text.split()[:5] == before.text.split()[-5:]
    for chunk in chunks:
        assert extracted.text[chunk.start : chunk.end] == chunk.text


def test_a_huge_single_line_is_cut_into_windows_within_the_size() -> None:
    extracted = extract_text(("word " * 5000).encode() + b"x" * 3000, "text/plain")
    chunks = chunk_text(extracted, size=100, overlap=10, count_tokens=words)
    assert all(0 < c.token_count <= 100 for c in chunks)
    assert chunks[-1].text.endswith("x")
    assert sum(len(c.text) for c in chunks) >= 5000 * 4


def test_chunks_keep_their_heading_path_and_never_cross_sections() -> None:
    markdown = b"# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n## Use\n\nOpen the app."
    extracted = extract_text(markdown, "text/markdown")
    chunks = chunk_text(extracted, size=200, overlap=0, count_tokens=words)
    paths = [c.heading_path for c in chunks]
    assert paths == [["Guide"], ["Guide", "Install"], ["Guide", "Use"]]
    assert chunks[1].text.startswith("## Install")  # the heading stays with its paragraph


def test_token_counts_come_from_the_models_tokenizer(minilm: Embedder) -> None:
    extracted = extract_text(("Tokenization of antidisestablishmentarianism. " * 200).encode(), "text/plain")
    chunks = chunk_text(extracted, size=64, overlap=8, count_tokens=minilm.count_tokens)
    assert len(chunks) > 5
    assert all(c.token_count <= 64 for c in chunks)
    assert all(c.token_count == minilm.count_tokens(c.text) for c in chunks)
