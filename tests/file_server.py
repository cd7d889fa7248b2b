"""A loopback HTTP file server for tests of outbound fetches (file_urls, webhooks): real HTTP on 127.0.0.1.

Tests put what each path answers and read back what it received::

    file_server.put("/public/a.txt", b"hello", content_type="text/plain")
    file_server.redirect("/public/moved", "http://elsewhere.example/x")
    url = file_server.url("/public/a.txt")
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Claim a smaller Content-Length than is sent (None: the true length; "" omits the header).
    content_length: str | None = None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        # Answers given once each, in turn, before the path's route (see answer_in_turn).
        self.turns: dict[str, list[Route]] = {}
        self.requests: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(Received(self.command, self.path, dict(self.headers), body))
                path = self.path.split("?", 1)[0]
                turns = server.turns.get(path)
                route = turns.pop(0) if turns else server.routes.get(path, Route(status=404, body=b"not found"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.content_length != "":
                    self.send_header("Content-Length", route.content_length or str(len(route.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(route.body)

            do_GET = _answer
            do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def put(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
        content_length: str | None = None,
    ) -> str:
        headers = {"Content-Type": content_type, **(headers or {})}
        self.routes[path] = Route(body=body, headers=headers, content_length=content_length)
        return self.url(path)

    def redirect(self, path: str, location: str, *, status: int = 302) -> str:
        self.routes[path] = Route(status=status, headers={"Location": location})
        return self.url(path)

    def answer_in_turn(self, path: str, *statuses: int) -> str:
        """Answer the next requests to ``path`` with these statuses, one each, then with its route (or 404)."""
        self.turns[path] = [Route(status=status, body=b"ok" if status < 300 else b"failed") for status in statuses]
        return self.url(path)

    def fail(self, path: str, status: int) -> str:
        self.routes[path] = Route(status=status, body=b"failed")
        return self.url(path)


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
