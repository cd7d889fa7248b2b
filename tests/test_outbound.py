"""aihub.outbound: which URLs aihub may reach, and fetching them with bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from aihub import outbound
from aihub.outbound import OutboundURLError, check_outbound_url, fetch, is_public_address
from tests.file_server import FileServer

PUBLIC = "https://93.184.215.14/public/"
"""An allowlisted prefix on a public IP literal: checking it needs no DNS."""


def rejected(url: str, allowlist: list[str], **kwargs: bool) -> OutboundURLError:
    with pytest.raises(OutboundURLError) as caught:
        check_outbound_url(url, allowlist=allowlist, **kwargs)
    assert caught.value.url == url[:2000]
    return caught.value


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_only_public_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_a_url_under_an_allowlisted_prefix_passes() -> None:
    assert check_outbound_url(PUBLIC + "a/report.pdf", allowlist=[PUBLIC]) == PUBLIC + "a/report.pdf"
    assert check_outbound_url("https://93.184.215.14:443/public", allowlist=[PUBLIC])
    assert check_outbound_url("HTTPS://93.184.215.14/x", allowlist=["https://93.184.215.14"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/public/a",
        "gopher://93.184.215.14/public/a",
        "javascript:alert(1)",
        "data:text/plain,hi",
    ],
)
def test_schemes_other_than_http_and_https_are_refused(url: str) -> None:
    assert rejected(url, [PUBLIC, "ftp://93.184.215.14/public/"]).code == "scheme"


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.15/public/a",  # another host
        "https://93.184.215.14/publicity/a",  # a prefix of the folder's name is not the folder
        "https://93.184.215.14/private/a",
        "http://93.184.215.14/public/a",  # another scheme
        "https://93.184.215.14:8443/public/a",  # another port
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str) -> None:
    error = rejected(url, [PUBLIC])
    assert error.code == "not_allowed"
    assert url in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/public/../private/a",
        "https://93.184.215.14/public/%2e%2e/private/a",
        "https://93.184.215.14/public/./a",
        "https://user:secret@93.184.215.14/public/a",
        "https://93.184.215.14:99999/public/a",
        "https:///public/a",
        "https://93.184.215.14/public/a b",
    ],
)
def test_tricky_urls_are_refused(url: str) -> None:
    assert rejected(url, [PUBLIC]).code == "invalid"


def test_a_host_that_resolves_to_a_private_address_is_refused(file_server: FileServer) -> None:
    url = file_server.url("/public/a.txt")
    error = rejected(url, [file_server.url("/public/")], allow_private=False)
    assert error.code == "private"
    assert "127.0.0.1" in str(error)
    assert rejected("http://localhost/x", ["http://localhost/"], allow_private=False).code == "private"


def test_private_addresses_pass_only_when_the_setting_allows_them(file_server: FileServer, settings: object) -> None:
    url = file_server.url("/public/a.txt")
    allowlist = [file_server.url("/public/")]
    assert rejected(url, allowlist).code == "private"  # the default
    settings.AIHUB = {"OUTBOUND_ALLOW_PRIVATE_NETWORKS": True}  # type: ignore[attr-defined]
    assert check_outbound_url(url, allowlist=allowlist) == url


def test_a_host_that_does_not_resolve_is_refused() -> None:
    url = "https://no-such-host.invalid/public/a"
    assert rejected(url, ["https://no-such-host.invalid/public/"]).code == "unresolvable"


# --- fetch ------------------------------------------------------------------------------------------------------


def fetch_local(server: FileServer, path: str, *, max_bytes: int = 1000, prefix: str = "/public/") -> outbound.Fetched:
    return fetch(server.url(path), allowlist=[server.url(prefix)], max_bytes=max_bytes, allow_private=True)


def test_fetch_reads_the_body_its_type_and_a_file_name(file_server: FileServer) -> None:
    file_server.put("/public/notes.txt", b"hello", content_type="text/plain; charset=utf-8")
    fetched = fetch_local(file_server, "/public/notes.txt")
    assert (fetched.data, fetched.content_type, fetched.filename) == (
        b"hello",
        "text/plain; charset=utf-8",
        "notes.txt",
    )
    assert file_server.requests[0].method == "GET"


def test_the_content_disposition_name_wins_without_its_folders(file_server: FileServer) -> None:
    disposition = {"Content-Disposition": 'attachment; filename="../../r.pdf"'}
    file_server.put("/public/download", b"x", content_type="application/pdf", headers=disposition)
    assert fetch_local(file_server, "/public/download").filename == "r.pdf"


def test_fetch_refuses_what_the_check_refuses_without_a_request(file_server: FileServer) -> None:
    file_server.put("/private/a.txt", b"secret")
    with pytest.raises(OutboundURLError) as caught:
        fetch_local(file_server, "/private/a.txt")
    assert caught.value.code == "not_allowed"
    assert file_server.requests == []


def test_a_body_larger_than_the_limit_is_refused_by_its_length(file_server: FileServer) -> None:
    file_server.put("/public/big", b"x" * 2000)
    with pytest.raises(OutboundURLError) as caught:
        fetch_local(file_server, "/public/big")
    assert caught.value.code == "too_large"


def test_a_body_larger_than_the_limit_is_refused_while_streaming(file_server: FileServer) -> None:
    file_server.put("/public/big", b"x" * 200_000, content_length="")  # no Content-Length to go by
    with pytest.raises(OutboundURLError) as caught:
        fetch_local(file_server, "/public/big", max_bytes=100_000)
    assert caught.value.code == "too_large"


def test_redirects_within_the_allowlist_are_followed(file_server: FileServer) -> None:
    file_server.put("/public/new.txt", b"moved here")
    file_server.redirect("/public/old.txt", "/public/new.txt")
    fetched = fetch_local(file_server, "/public/old.txt")
    assert (fetched.data, fetched.url) == (b"moved here", file_server.url("/public/new.txt"))


def test_a_redirect_out_of_the_allowlist_is_refused(file_server: FileServer) -> None:
    file_server.put("/private/secret.txt", b"secret")
    file_server.redirect("/public/jump", "/private/secret.txt")
    with pytest.raises(OutboundURLError) as caught:
        fetch_local(file_server, "/public/jump")
    assert caught.value.code == "not_allowed"
    assert "/public/jump" in str(caught.value)
    assert [r.path for r in file_server.requests] == ["/public/jump"]


def test_endless_redirects_end(file_server: FileServer, settings: object) -> None:
    settings.AIHUB = {"OUTBOUND_MAX_REDIRECTS": 2}  # type: ignore[attr-defined]
    file_server.redirect("/public/loop", "/public/loop")
    with pytest.raises(OutboundURLError, match="more than 2"):
        fetch_local(file_server, "/public/loop")
    assert len(file_server.requests) == 3


def test_an_error_status_is_an_error(file_server: FileServer) -> None:
    file_server.fail("/public/gone", 404)
    with pytest.raises(OutboundURLError, match="HTTP 404") as caught:
        fetch_local(file_server, "/public/gone")
    assert caught.value.code == "status"


def test_a_closed_port_is_unreachable(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/public/a"
    with pytest.raises(OutboundURLError) as caught:
        fetch(url, allowlist=[f"http://127.0.0.1:{closed_port}/"], max_bytes=10, allow_private=True, timeout=2)
    assert caught.value.code == "unreachable"


def test_a_name_that_resolves_elsewhere_when_connecting_is_caught(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the check sees a public address, the connection then reaches a loopback one.
    monkeypatch.setattr(outbound, "_resolve", lambda host, port, url: ["93.184.215.14"])
    file_server.put("/public/a.txt", b"internal")
    with pytest.raises(OutboundURLError) as caught:
        fetch(file_server.url("/public/a.txt"), allowlist=[file_server.url("/public/")], max_bytes=100)
    assert caught.value.code == "private"
    assert file_server.requests == []


def test_the_session_ignores_proxies_from_the_environment(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    file_server.put("/public/a.txt", b"direct")
    with outbound.session(allow_private=True) as client:
        assert client.get(file_server.url("/public/a.txt"), timeout=5).content == b"direct"
    with outbound.session(allow_private=False) as client, pytest.raises(requests.ConnectionError):
        client.get(file_server.url("/public/a.txt"), timeout=5)


# --- Local folders ----------------------------------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "guide.md").write_text("# Guide\n")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "shared-other").mkdir()
    (tmp_path / "shared-other" / "x.txt").write_text("x")
    return folder


def test_files_in_an_allowlisted_folder_are_read(shared: Path) -> None:
    fetched = fetch(f"file://{shared}/guide.md", allowlist=[f"file://{shared}/"], max_bytes=100)
    assert (fetched.data, fetched.filename) == (b"# Guide\n", "guide.md")


@pytest.mark.parametrize("relative", ["../secret.txt", "%2e%2e/secret.txt", "../shared-other/x.txt"])
def test_paths_that_leave_the_folder_are_refused(shared: Path, relative: str) -> None:
    error = rejected(f"file://{shared}/{relative}", [f"file://{shared}/"])
    assert error.code == "not_allowed"


def test_a_symlink_out_of_the_folder_is_refused(shared: Path) -> None:
    os.symlink(shared.parent / "secret.txt", shared / "link.txt")
    assert rejected(f"file://{shared}/link.txt", [f"file://{shared}"]).code == "not_allowed"


def test_file_urls_with_a_host_are_refused(shared: Path) -> None:
    assert rejected(f"file://fileserver{shared}/guide.md", [f"file://{shared}/"]).code == "invalid"


def test_a_local_file_over_the_limit_is_refused(shared: Path) -> None:
    with pytest.raises(OutboundURLError) as caught:
        fetch(f"file://{shared}/guide.md", allowlist=[f"file://{shared}/"], max_bytes=3)
    assert caught.value.code == "too_large"


def test_a_missing_local_file_is_unreachable(shared: Path) -> None:
    with pytest.raises(OutboundURLError) as caught:
        fetch(f"file://{shared}/missing.md", allowlist=[f"file://{shared}/"], max_bytes=3)
    assert caught.value.code == "unreachable"


# --- post -------------------------------------------------------------------------------------------------------


def test_post_sends_the_body_and_returns_the_status_without_following_redirects(file_server: FileServer) -> None:
    file_server.redirect("/hooks/moved", "http://93.184.215.14/elsewhere", status=307)
    allowlist = [file_server.url("/hooks/")]

    status = outbound.post(
        file_server.url("/hooks/moved"),
        allowlist=allowlist,
        body=b'{"a":1}',
        headers={"X-Test": "1"},
        allow_private=True,
    )

    assert status == 307
    [request] = file_server.requests
    assert (request.method, request.body, request.headers["X-Test"]) == ("POST", b'{"a":1}', "1")


def test_post_refuses_what_the_check_refuses_and_non_public_peers(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowlist = [file_server.url("/hooks/")]
    with pytest.raises(OutboundURLError) as off_list:
        outbound.post(file_server.url("/other"), allowlist=allowlist, body=b"", headers={}, allow_private=True)
    assert off_list.value.code == "not_allowed"
    monkeypatch.setattr(outbound, "_resolve", lambda host, port, url: ["93.184.215.14"])
    with pytest.raises(OutboundURLError) as rebound:
        outbound.post(file_server.url("/hooks/x"), allowlist=allowlist, body=b"", headers={})
    assert rebound.value.code == "private"
    assert file_server.requests == []
