"""Helpers: aiohttp application backends and storage nodes, and a proxy built from a dict."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from hastack.config import config_from_dict
from hastack.proxy.config import ProxyConfig
from hastack.proxy.server import ProxyService
from hastack.testing import running_service
from hastack.testing import wait_until as wait_for  # noqa: F401 (re-exported for the tests)


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    port = sock.getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


STATE = web.AppKey("state", dict)
HITS = web.AppKey("hits", list)


def make_backend(name: str, extra: dict[str, Any] | None = None) -> web.Application:
    """An application server; ``extra`` holds reproxy answers for /file/... requests."""
    state: dict[str, Any] = {"hits": 0, "healthy": True, **(extra or {})}

    async def hello(request: web.Request) -> web.Response:
        state["hits"] += 1
        return web.Response(text=f"hello from {name}\n", headers={"X-Backend": name})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, headers={"X-Backend": name})

    async def headers(request: web.Request) -> web.Response:
        return web.json_response(
            {"headers": dict(request.headers), "backend": name, "path": request.path_qs}
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i}\n".encode())
        await resp.write_eof()
        return resp

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status\n")

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200 if state["healthy"] else 503, text="ok\n")

    async def file(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        hdrs = dict(state.get("reproxy", {}).get(key, {}))
        status = int(hdrs.pop(":status", 200))
        return web.Response(status=status, headers=hdrs)

    async def big(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(body=b"x" * n)

    app = web.Application()
    app[STATE] = state
    app.router.add_get("/hello", hello)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/headers", headers)
    app.router.add_get("/stream", stream)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/file/{key}", file)
    app.router.add_get("/big/{n}", big)
    return app


def make_storage(root: Path) -> web.Application:
    """A storage node: files under root, with Range support (aiohttp FileResponse)."""
    hits: list[str] = []

    async def get(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        path = root / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"X-Storage": "yes"})

    app = web.Application()
    app[HITS] = hits
    app.router.add_get("/{name}", get)
    return app


@asynccontextmanager
async def run_proxy(table: dict[str, Any]) -> AsyncIterator[ProxyService]:
    cfg = config_from_dict(ProxyConfig, table, table_name="proxy")
    async with running_service(ProxyService, cfg) as svc:
        yield svc


def proxy_addr(svc: ProxyService, name: str = "web") -> tuple[str, int]:
    lst = next(t for t in svc.tcp_listeners if t.name == name)
    return lst.address.host, lst.address.port


class Blackhole:
    """A TCP server that accepts and never answers (a hung backend or storage node)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._task: asyncio.Task[None] | None = None

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            self.accepted.append(conn)

    async def __aenter__(self) -> Blackhole:
        self._task = asyncio.create_task(self._accept())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        for c in self.accepted:
            c.close()
        self.sock.close()


def dead_address() -> str:
    """An address where nothing listens (connect is refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


async def raw_request(
    host: str, port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 10.0
) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    try:
        if read_until_close:
            return await asyncio.wait_for(reader.read(), timeout)
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


def jsonb(data: bytes) -> Any:
    return json.loads(data.split(b"\r\n\r\n", 1)[1])
