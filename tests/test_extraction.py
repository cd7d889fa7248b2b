"""aihub.extraction: what a file is and what it says, on small real files made here."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from aihub import extraction
from aihub.extraction import ExtractionError, extract_text, sniff_media_type
from tests.sample_files import make_docx, make_encrypted_pdf, make_pdf, png


def assert_sections_point_into_the_text(extracted: extraction.Extracted) -> None:
    for section in extracted.sections:
        assert extracted.text[section.start : section.end] == section.text


# --- sniff_media_type -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (make_pdf("Hello"), "application/pdf"),
        (make_docx(), extraction.DOCX),
        (png(), "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    ],
)
def test_magic_bytes_decide_whatever_the_name_says(data: bytes, expected: str) -> None:
    assert sniff_media_type(data, "notes.txt") == expected
    assert sniff_media_type(data, None) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("README.md", "text/markdown"),
        ("page.HTML", "text/html"),
        ("table.csv", "text/csv"),
        ("data.json", "application/json"),
        ("notes.txt", "text/plain"),
        ("no-extension", "text/plain"),
        (None, "text/plain"),
    ],
)
def test_utf8_text_is_named_by_its_extension(filename: str | None, expected: str) -> None:
    assert sniff_media_type("a, b\nÄrger, 2\n".encode(), filename) == expected


def test_text_without_a_telling_name_is_recognised_by_its_shape() -> None:
    assert sniff_media_type(b'{"a": [1, 2]}', "upload") == "application/json"
    assert sniff_media_type(b"<!DOCTYPE html><html><body>x</body></html>", None) == "text/html"
    assert sniff_media_type(b"{not json", None) == "text/plain"


def test_a_file_that_only_claims_to_be_a_pdf_or_text_is_not_one() -> None:
    assert sniff_media_type(b"\x00\x01\x02binary\xff\xfe", "report.pdf") == "application/octet-stream"
    assert sniff_media_type(b"\x00\x00\x00\x00", "notes.txt") == "application/octet-stream"
    assert sniff_media_type(b"PK\x03\x04 not really a zip", "letter.docx") == "application/octet-stream"


def test_a_zip_that_is_not_a_word_document_is_not_called_one() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert sniff_media_type(buffer.getvalue(), "archive.docx") == "application/octet-stream"


# --- extract_text -----------------------------------------------------------------------------------------------


def test_plain_text_is_one_section_with_newlines_normalised() -> None:
    extracted = extract_text("\ufeffline one\r\nline two\r\n".encode(), "text/plain; charset=utf-8")
    assert extracted.text == "line one\nline two\n"
    assert [(s.start, s.end, s.heading_path) for s in extracted.sections] == [(0, len(extracted.text), [])]
    assert extracted.media_type == "text/plain"


def test_markdown_sections_follow_the_headings_but_not_code() -> None:
    source = (
        "Intro line.\n\n"
        "# Guide\n\nAbout the guide.\n\n"
        "## Install\n\nRun it.\n\n```sh\n# not a heading\n```\n\n"
        "## Use\n\nUse it.\n\n"
        "Appendix\n========\n\nThe end.\n"
    )
    extracted = extract_text(source.encode(), "text/markdown")
    assert extracted.text == source
    assert [s.heading_path for s in extracted.sections] == [
        [],
        ["Guide"],
        ["Guide", "Install"],
        ["Guide", "Use"],
        ["Appendix"],
    ]
    assert "# not a heading" in extracted.sections[2].text
    assert extracted.sections[3].text.startswith("## Use")
    assert_sections_point_into_the_text(extracted)


def test_html_keeps_the_content_and_drops_scripts_styles_and_navigation() -> None:
    page = b"""<!doctype html><html><head><title>T</title><style>p { color: red }</style></head><body>
    <nav><a href="/">Home</a> <a href="/x">Menu item</a></nav>
    <script>alert("no")</script>
    <p>Before any heading.</p>
    <h1>Company</h1><p>We make <b>tools</b>.</p>
    <h2>Team</h2><ul><li>Ada</li><li>Grace</li></ul>
    <table><tr><td>Zurich</td><td>25</td></tr></table>
    <h1>Contact</h1><p>mail@example.com</p><!-- hidden comment -->
    </body></html>"""
    extracted = extract_text(page, "text/html")
    for absent in ("alert", "color: red", "Menu item", "hidden comment"):
        assert absent not in extracted.text
    assert "We make tools ." in extracted.text or "We make tools." in extracted.text
    assert [s.heading_path for s in extracted.sections] == [[], ["Company"], ["Company", "Team"], ["Contact"]]
    team = extracted.sections[2].text
    assert "Ada" in team and "Grace" in team and "Zurich | 25 |" in team
    assert extracted.sections[3].text == "Contact\n\nmail@example.com"
    assert_sections_point_into_the_text(extracted)


def test_pdf_text_comes_with_its_page_numbers() -> None:
    extracted = extract_text(make_pdf("First page text", "Second page text"), "application/pdf")
    assert [(s.page, s.text) for s in extracted.sections] == [(1, "First page text"), (2, "Second page text")]
    assert extracted.text == "First page text\n\nSecond page text"
    assert_sections_point_into_the_text(extracted)


def test_an_encrypted_pdf_is_refused_clearly() -> None:
    with pytest.raises(ExtractionError, match="encrypted") as caught:
        extract_text(make_encrypted_pdf("Secret", user_password="open sesame"), "application/pdf")
    assert caught.value.code == "encrypted"


def test_a_pdf_with_an_empty_user_password_opens() -> None:
    assert extract_text(make_encrypted_pdf("Readable", user_password=""), "application/pdf").text == "Readable"


def test_a_damaged_pdf_is_an_extraction_error_not_a_crash() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text(b"%PDF-1.4\n1 0 obj garbage", "application/pdf")
    assert caught.value.code == "corrupt"


def test_docx_paragraphs_tables_and_headings() -> None:
    extracted = extract_text(make_docx(), extraction.DOCX)
    assert extracted.text.startswith("Handbook\n\nWelcome to the team.")
    assert [s.heading_path for s in extracted.sections] == [["Handbook"], ["Handbook", "Holidays"], ["Expenses"]]
    assert "Region | Days" in extracted.sections[1].text and "Zurich | 25" in extracted.sections[1].text
    assert_sections_point_into_the_text(extracted)


def test_a_damaged_docx_is_an_extraction_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<not xml")
    with pytest.raises(ExtractionError) as caught:
        extract_text(buffer.getvalue(), extraction.DOCX)
    assert caught.value.code == "corrupt"


def test_a_docx_that_unpacks_to_too_much_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extraction, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ExtractionError) as caught:
        extract_text(make_docx(), extraction.DOCX)
    assert caught.value.code == "too_large"


def test_csv_is_kept_as_written() -> None:
    extracted = extract_text(b"name,days\r\nAda,25\r\n", "text/csv")
    assert extracted.text == "name,days\nAda,25\n"
    assert len(extracted.sections) == 1


def test_json_is_indented_for_reading() -> None:
    extracted = extract_text(b'{"b": [1, 2], "a": "\xc3\xa4"}', "application/json")
    assert json.loads(extracted.text) == {"b": [1, 2], "a": "ä"}
    assert extracted.text.startswith('{\n  "b"')


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(b"{broken", "application/json"), (b"\xff\xfe\x00bad", "text/plain"), (b'a,"b\n', "text/csv")],
)
def test_broken_text_files_are_extraction_errors(data: bytes, media_type: str) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text(data, media_type)
    assert caught.value.code == "corrupt"
    assert str(caught.value)


@pytest.mark.parametrize("media_type", ["image/png", "application/zip", "", "application/octet-stream"])
def test_types_without_text_are_unsupported(media_type: str) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text(png(), media_type)
    assert caught.value.code == "unsupported"


def test_empty_text_has_no_sections() -> None:
    assert extract_text(b"   \n", "text/plain").sections == []
