"""A loopback server speaking OpenAI's ``POST /v1/embeddings`` wire protocol, for the OpenAI-compatible embedder.

Each input's vector is derived from its text (deterministic), so tests can check order and content; a
``fail_with`` status makes every request answer that error, as a provider outage would.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def vector_for(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [((digest[i % len(digest)] + i) % 17) - 8.0 for i in range(dimensions)]


class EmbeddingsServer:
    def __init__(self, dimensions: int = 8) -> None:
        self.dimensions = dimensions
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if server.fail_with is not None:
                    self._send(server.fail_with, {"error": {"message": "boom", "type": "server_error"}})
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                # Returned out of order on purpose: clients must sort by index.
                data = [
                    {"object": "embedding", "index": i, "embedding": vector_for(text, server.dimensions)}
                    for i, text in reversed(list(enumerate(inputs)))
                ]
                usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
                self._send(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
