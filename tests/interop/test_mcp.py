"""The official mcp SDK client against a real daphne: initialize, tools (the agents), a call, threads as resources;
and the errors of the protocol: no token, bad JSON-RPC, an unsupported protocol version."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")


def in_session(base: str, token: str, work: Callable[[ClientSession], Awaitable[T]], *, path: str = "/mcp") -> T:
    async def main() -> T:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(f"{base}{path}", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    return anyio.run(main)


def post(base: str, body: bytes, *, token: str = "", headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(f"{base}/mcp", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json, text/event-stream")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def test_the_agents_are_tools(embedded_server: tuple[str, str]) -> None:
    async def work(session: ClientSession) -> Any:
        return await session.list_tools()

    tools = {tool.name: tool for tool in in_session(*embedded_server, work).tools}
    assert {"echo", "assistant", "calculator", "knowledge_search"} <= set(tools)
    assert tools["echo"].input_schema["required"] == ["message"]
    assert "thread" in tools["echo"].input_schema["properties"]


def test_calling_an_agent_answers_and_its_thread_is_a_readable_resource(embedded_server: tuple[str, str]) -> None:
    async def work(session: ClientSession) -> Any:
        called = await session.call_tool("echo", {"message": "hello from mcp"})
        thread = called.structured_content["thread"]
        again = await session.call_tool("echo", {"message": "and again", "thread": thread})
        resources = await session.list_resources()
        uri = next(r.uri for r in resources.resources if r.uri.endswith(thread))
        read = await session.read_resource(uri)
        return called, again, read

    called, again, read = in_session(*embedded_server, work)
    assert not called.is_error
    assert called.content[0].text == "hello from mcp"
    assert called.structured_content["status"] == "succeeded"
    assert again.structured_content["thread"] == called.structured_content["thread"]
    by_type = {content.mime_type: content.text for content in read.contents}
    document = json.loads(by_type["application/json"])
    assert [m["role"] for m in document["messages"]] == ["user", "assistant", "user", "assistant"]
    assert "user: hello from mcp" in by_type["text/plain"]
    assert "assistant: and again" in by_type["text/plain"]


def test_an_unknown_tool_is_a_protocol_error_and_bad_input_a_tool_error(embedded_server: tuple[str, str]) -> None:
    async def work(session: ClientSession) -> Any:
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("no-such-agent", {"message": "hi"})
        empty = await session.call_tool("echo", {"message": ""})
        stranger = await session.call_tool("echo", {"message": "hi", "thread": "00000000-0000-0000-0000-000000000000"})
        return unknown.value, empty, stranger

    unknown, empty, stranger = in_session(*embedded_server, work)
    assert "Unknown tool" in unknown.message
    assert empty.is_error and "message" in empty.content[0].text
    assert stranger.is_error and "No thread" in stranger.content[0].text


def test_reading_a_thread_that_is_not_yours_is_an_error(embedded_server: tuple[str, str]) -> None:
    async def work(session: ClientSession) -> Any:
        with pytest.raises(MCPError) as missing:
            await session.read_resource("aihub://demo/threads/00000000-0000-0000-0000-000000000000")
        return missing.value

    assert "not found" in in_session(*embedded_server, work).message


def test_without_a_token_the_answer_is_401_with_a_challenge(embedded_server: tuple[str, str]) -> None:
    base, _ = embedded_server
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    status, headers, body = post(base, json.dumps(initialize).encode())
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]["code"] < 0
    status, _, body = post(base, json.dumps(initialize).encode(), token="aih_000000000000_wrong")
    assert status == 401


def test_malformed_json_rpc_gets_a_json_rpc_error(embedded_server: tuple[str, str]) -> None:
    base, token = embedded_server
    status, _, body = post(base, b"{not json", token=token)
    assert status == 400
    assert body["error"]["code"] == -32700  # parse error
    status, _, body = post(base, json.dumps({"id": 1, "method": 42}).encode(), token=token)
    assert status == 400
    assert body["error"]["code"] in (-32600, -32602)  # invalid request


def test_an_unsupported_protocol_version_is_refused(embedded_server: tuple[str, str]) -> None:
    base, token = embedded_server
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    status, _, body = post(base, json.dumps(ping).encode(), token=token, headers={"MCP-Protocol-Version": "1999-01-01"})
    assert status == 400
    assert "version" in json.dumps(body).lower()
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    status, _, body = post(base, json.dumps(initialize).encode(), token=token)
    # Negotiation: the server answers with a version it supports instead of the unknown one.
    assert status == 200
    assert body["result"]["protocolVersion"] != "1999-01-01"


def test_the_2026_protocol_without_a_handshake_is_served_too(embedded_server: tuple[str, str]) -> None:
    # The 2026-07-28 revision has no initialize: every request carries its version in _meta and headers.
    base, token = embedded_server
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": envelope}}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
    status, _, body = post(base, json.dumps(request).encode(), token=token, headers=headers)
    assert status == 200, body
    assert "echo" in {tool["name"] for tool in body["result"]["tools"]}


def test_a_foreign_browser_origin_is_refused_and_the_servers_own_is_served_with_cors(
    embedded_server: tuple[str, str],
) -> None:
    base, token = embedded_server
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()

    status, _, body = post(base, ping, token=token, headers={"Origin": "http://evil.example"})
    assert status == 403
    assert "not allowed" in body["error"]["message"]

    status, headers, _ = post(base, ping, headers={"Origin": base})
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == base
    assert "WWW-Authenticate" in headers["Access-Control-Expose-Headers"]

    preflight = urllib.request.Request(f"{base}/mcp", method="OPTIONS")
    preflight.add_header("Origin", base)
    preflight.add_header("Access-Control-Request-Method", "POST")
    with urllib.request.urlopen(preflight, timeout=20) as response:
        assert response.status == 204
        assert "mcp-protocol-version" in response.headers["Access-Control-Allow-Headers"]
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
