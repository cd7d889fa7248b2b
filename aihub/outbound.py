"""The one policy for URLs aihub reaches out to (``file_urls`` of a message, webhooks): check, then fetch.

``check_outbound_url`` accepts a URL only when it starts with an allowlisted prefix (scheme, host, port and a
path prefix ending at a segment boundary) and, for http(s), when none of the host's addresses is private,
loopback, link-local, multicast or otherwise not public — unless ``OUTBOUND_ALLOW_PRIVATE_NETWORKS`` is on.
``fetch`` reads an accepted URL with bounds: a timeout per step and overall, a byte limit while streaming, and
redirects followed by hand, each target checked again. The address a connection actually reaches is checked
once more, so a DNS answer that changes between the check and the request (rebinding) gains nothing.

``file://`` prefixes allow local folders: the path is resolved (symlinks and ``..`` followed) and must stay
inside an allowlisted folder.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from aihub.conf import aihub_settings

ErrorCode = Literal["invalid", "scheme", "not_allowed", "private", "unresolvable", "too_large", "unreachable", "status"]


class OutboundURLError(Exception):
    """The URL may not be reached, or reaching it failed; the message names the URL and says why."""

    def __init__(self, message: str, *, url: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.url = url
        self.code = code


@dataclass(frozen=True)
class Fetched:
    """What a URL gave: its bytes, the declared Content-Type (a hint only), the final URL and a file name."""

    data: bytes
    content_type: str
    url: str
    filename: str


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _allow_private(allow_private: bool | None) -> bool:
    return bool(aihub_settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS if allow_private is None else allow_private)


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (not private, loopback, link-local, multicast...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _clean_path(raw: str, url: str) -> str:
    """The URL's decoded path; a ``..`` or ``.`` segment (plain or %-encoded) could step out of a prefix."""
    path = unquote(raw) or "/"
    if any(segment in (".", "..") for segment in path.split("/")) or "\\" in path or "\x00" in path:
        raise OutboundURLError(f"{url} has a path with '.' or '..' segments.", url=url, code="invalid")
    return path


def _path_under(path: str, prefix: str) -> bool:
    if not prefix or prefix == "/":
        return True
    return path == prefix.rstrip("/") or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _host_of(url: str, parts: Any) -> str:
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 — raises ValueError on a port that is not a number
    except ValueError:
        raise OutboundURLError(f"{url} is not a valid URL.", url=url, code="invalid") from None
    return host.rstrip(".").lower()


def _matches(url: str, parts: Any, path: str, entry: str) -> bool:
    allowed = urlsplit(entry.strip())
    if allowed.scheme.lower() != parts.scheme.lower():
        return False
    if parts.scheme.lower() == "file":
        return False  # folders are matched by _local_path, on the resolved path
    if (allowed.hostname or "").rstrip(".").lower() != _host_of(url, parts):
        return False
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if (allowed.port or default) != (parts.port or default):
        return False
    return _path_under(path, unquote(allowed.path))


def _resolve(host: str, port: int, url: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise OutboundURLError(f"{url}: the host {host} does not resolve.", url=url, code="unresolvable") from None
    return sorted({str(info[4][0]) for info in infos})


def _local_path(url: str, parts: Any, allowlist: Sequence[str]) -> Path:
    if parts.netloc not in ("", "localhost"):
        raise OutboundURLError(f"{url}: file URLs name a local path, not a host.", url=url, code="invalid")
    raw = unquote(parts.path)
    if "\x00" in raw or not raw.startswith("/"):
        raise OutboundURLError(f"{url} is not an absolute file path.", url=url, code="invalid")
    target = Path(os.path.realpath(raw))  # symlinks and ".." followed: what would really be read
    for entry in allowlist:
        allowed = urlsplit(entry.strip())
        if allowed.scheme.lower() != "file" or not allowed.path:
            continue
        folder = Path(os.path.realpath(unquote(allowed.path)))
        if target == folder or target.is_relative_to(folder):
            return target
    raise OutboundURLError(f"{url} is not in a folder on the file URL allowlist.", url=url, code="not_allowed")


def check_outbound_url(url: str, *, allowlist: Sequence[str], allow_private: bool | None = None) -> str:
    """``url`` when aihub may reach it, else OutboundURLError (its message names the URL and says why).

    ``allow_private`` None follows the OUTBOUND_ALLOW_PRIVATE_NETWORKS setting.
    """
    if not isinstance(url, str) or not url or len(url) > 2000 or any(ord(c) <= 32 for c in url):
        raise OutboundURLError(f"{str(url)[:200]!r} is not a valid URL.", url=str(url)[:2000], code="invalid")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        _local_path(url, parts, allowlist)
        return url
    if scheme not in _DEFAULT_PORTS:
        raise OutboundURLError(f"{url}: only http and https URLs may be fetched.", url=url, code="scheme")
    host = _host_of(url, parts)
    if not host:
        raise OutboundURLError(f"{url} has no host.", url=url, code="invalid")
    if parts.username is not None or parts.password is not None:
        raise OutboundURLError(f"{url}: credentials in URLs are not accepted.", url=url, code="invalid")
    path = _clean_path(parts.path, url)
    if not any(_matches(url, parts, path, entry) for entry in allowlist):
        raise OutboundURLError(f"{url} is not on the allowlist.", url=url, code="not_allowed")
    if not _allow_private(allow_private):
        port = parts.port or _DEFAULT_PORTS[scheme]
        for address in _resolve(host, port, url):
            if not is_public_address(address):
                raise OutboundURLError(
                    f"{url}: {host} resolves to the non-public address {address}.", url=url, code="private"
                )
    return url


# --- Fetching ---------------------------------------------------------------------------------------------------


class _NonPublicPeer(OSError):
    """A connection reached a non-public address (an OSError, so urllib3 gives up on it like on any other)."""


def _non_public_peer(exc: BaseException) -> _NonPublicPeer | None:
    """The _NonPublicPeer somewhere inside the exceptions requests and urllib3 wrap it in."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NonPublicPeer):
            return current
        pending.extend([*current.args, current.__cause__, current.__context__, getattr(current, "reason", None)])
    return None


class _PeerCheck:
    """Checks the address a new connection reached: the DNS answer used may differ from the one checked."""

    allow_private = False

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        address = str(sock.getpeername()[0])
        if not self.allow_private and not is_public_address(address):
            sock.close()
            raise _NonPublicPeer(f"the connection reached the non-public address {address}")
        return sock


@cache
def _adapter_class(allow_private: bool) -> type[HTTPAdapter]:
    http_connection = type("GuardedHTTPConnection", (_PeerCheck, HTTPConnection), {"allow_private": allow_private})
    https_connection = type("GuardedHTTPSConnection", (_PeerCheck, HTTPSConnection), {"allow_private": allow_private})
    http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_connection})
    https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_connection})

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    return GuardedAdapter


def session(*, allow_private: bool | None = None) -> requests.Session:
    """A requests session whose connections refuse non-public peers (unless allowed) and ignore proxy and netrc
    settings of the environment (a proxy would hide the peer)."""
    client = requests.Session()
    client.trust_env = False
    adapter = _adapter_class(_allow_private(allow_private))()
    client.mount("http://", adapter)
    client.mount("https://", adapter)
    return client


def _filename(url: str, headers: Any) -> str:
    disposition = headers.get("Content-Disposition", "") if headers is not None else ""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value.strip('"'):
            return posixpath.basename(value.strip('"').replace("\\", "/"))[:200]
    return posixpath.basename(unquote(urlsplit(url).path))[:200]


def _read_local(url: str, allowlist: Sequence[str], max_bytes: int) -> Fetched:
    path = _local_path(url, urlsplit(url), allowlist)
    try:
        with path.open("rb") as handle:
            if not path.is_file():
                raise OutboundURLError(f"{url} is not a file.", url=url, code="unreachable")
            data = handle.read(max_bytes + 1)
    except OSError:
        raise OutboundURLError(f"{url} cannot be read.", url=url, code="unreachable") from None
    if len(data) > max_bytes:
        raise OutboundURLError(f"{url} is larger than {max_bytes} bytes.", url=url, code="too_large")
    return Fetched(data=data, content_type="", url=url, filename=path.name[:200])


def fetch(
    url: str,
    *,
    allowlist: Sequence[str],
    max_bytes: int,
    timeout: float | None = None,
    allow_private: bool | None = None,
) -> Fetched:
    """GET an allowed URL (or read an allowed local file) into memory, at most ``max_bytes``.

    Redirects are followed up to OUTBOUND_MAX_REDIRECTS, each target checked like the first URL. ``timeout``
    (default OUTBOUND_TIMEOUT_SECONDS) bounds each connect and read and the whole download. Any failure is an
    OutboundURLError naming the URL.
    """
    check_outbound_url(url, allowlist=allowlist, allow_private=allow_private)
    if urlsplit(url).scheme.lower() == "file":
        return _read_local(url, allowlist, max_bytes)
    limit = float(aihub_settings.OUTBOUND_TIMEOUT_SECONDS if timeout is None else timeout)
    deadline = time.monotonic() + limit
    redirects = int(aihub_settings.OUTBOUND_MAX_REDIRECTS)
    with session(allow_private=allow_private) as client:
        current = url
        for _ in range(redirects + 1):
            try:
                response = client.get(current, stream=True, allow_redirects=False, timeout=(limit, limit))
            except requests.RequestException as exc:
                peer = _non_public_peer(exc)
                if peer is not None:
                    raise OutboundURLError(f"{current}: {peer}.", url=current, code="private") from None
                reason = "timed out" if isinstance(exc, requests.Timeout) else "could not be reached"
                raise OutboundURLError(f"{current} {reason}.", url=current, code="unreachable") from None
            with response:
                if response.is_redirect:
                    target = urljoin(current, response.headers.get("Location", ""))
                    try:
                        check_outbound_url(target, allowlist=allowlist, allow_private=allow_private)
                    except OutboundURLError as exc:
                        raise OutboundURLError(
                            f"{url} redirects to a URL that may not be fetched: {exc}", url=url, code=exc.code
                        ) from None
                    if urlsplit(target).scheme.lower() == "file":
                        raise OutboundURLError(f"{url} redirects to a local file.", url=url, code="scheme")
                    current = target
                    continue
                if response.status_code != 200:
                    raise OutboundURLError(
                        f"{current} answered HTTP {response.status_code}.", url=current, code="status"
                    )
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise OutboundURLError(
                        f"{current} is larger than {max_bytes} bytes.", url=current, code="too_large"
                    )
                chunks: list[bytes] = []
                size = 0
                try:
                    for chunk in response.iter_content(chunk_size=64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            raise OutboundURLError(
                                f"{current} is larger than {max_bytes} bytes.", url=current, code="too_large"
                            )
                        if time.monotonic() > deadline:
                            raise OutboundURLError(f"{current} timed out.", url=current, code="unreachable")
                        chunks.append(chunk)
                except requests.RequestException:
                    raise OutboundURLError(f"{current} broke off.", url=current, code="unreachable") from None
                return Fetched(
                    data=b"".join(chunks),
                    content_type=response.headers.get("Content-Type", ""),
                    url=current,
                    filename=_filename(current, response.headers),
                )
    raise OutboundURLError(f"{url} redirects more than {redirects} times.", url=url, code="unreachable")


def post(
    url: str,
    *,
    allowlist: Sequence[str],
    body: bytes,
    headers: dict[str, str],
    timeout: float | None = None,
    allow_private: bool | None = None,
) -> int:
    """POST ``body`` to an allowed http(s) URL and return the response's status; redirects are not followed
    (a 3xx is returned as it is). OutboundURLError when the URL may not be reached or the request fails."""
    check_outbound_url(url, allowlist=allowlist, allow_private=allow_private)
    if urlsplit(url).scheme.lower() not in _DEFAULT_PORTS:
        raise OutboundURLError(f"{url}: only http and https URLs take a POST.", url=url, code="scheme")
    limit = float(aihub_settings.OUTBOUND_TIMEOUT_SECONDS if timeout is None else timeout)
    with session(allow_private=allow_private) as client:
        try:
            response = client.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=(limit, limit), stream=True
            )
        except requests.RequestException as exc:
            peer = _non_public_peer(exc)
            if peer is not None:
                raise OutboundURLError(f"{url}: {peer}.", url=url, code="private") from None
            reason = "timed out" if isinstance(exc, requests.Timeout) else "could not be reached"
            raise OutboundURLError(f"{url} {reason}.", url=url, code="unreachable") from None
        response.close()  # streamed and never read: only the status matters, however large the body
        return int(response.status_code)
