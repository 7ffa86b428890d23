"""The example app in-process: cached counter, degraded page, cached slow page, reproxied files."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from hastack.app.config import AppConfig
from hastack.app.server import VISITS_KEY, AppService, safe_file
from hastack.cache.client import CacheClient
from hastack.cache.config import CacheConfig
from hastack.cache.server import CacheService
from hastack.config import Address, config_from_dict
from hastack.proxy.config import ProxyConfig
from hastack.proxy.server import ProxyService
from hastack.testing import running_service

PAGE = b"<!doctype html><p>a file the proxy streams</p>\n" * 50


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    (root / "index.html").write_bytes(PAGE)
    (tmp_path / "secret.txt").write_text("not for the web\n")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")  # points outside files_dir
    return root


def dead_address() -> Address:
    """An address where nothing listens (connect is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Address("127.0.0.1", port)


@asynccontextmanager
async def stack(files_dir: Path | None = None, *, cache: bool = True) -> AsyncIterator[
    tuple[AppService, str, CacheService | None]
]:
    """A cache (or a dead cache address) and the app; yields (app, base URL, cache)."""
    async with AsyncExitStack() as es:
        cache_svc = None
        if cache:
            cache_svc = await es.enter_async_context(
                running_service(CacheService, CacheConfig(listen=Address("127.0.0.1", 0)))
            )
            assert cache_svc.listener is not None
            cache_addr = cache_svc.listener.address
        else:
            cache_addr = dead_address()
        cfg = AppConfig(
            listen=Address("127.0.0.1", 0),
            cache_servers=(cache_addr,),
            files_dir=files_dir,
            query_delay=0.0,
        )
        app = await es.enter_async_context(running_service(AppService, cfg))
        yield app, f"http://{app.addresses()['listen']}", cache_svc


async def test_counter_goes_up_in_the_cache() -> None:
    async with stack() as (app, base, cache_svc), aiohttp.ClientSession() as s:
        for n in (1, 2, 3):
            async with s.get(base + "/") as r:
                assert r.status == 200 and r.content_type == "text/html"
                assert f"visit number {n}." in await r.text()
        assert cache_svc is not None and cache_svc.listener is not None
        client = CacheClient([cache_svc.listener.address])
        try:
            assert await client.get(VISITS_KEY) == b"3"  # the count lives in the cache
        finally:
            await client.close()
        assert app.stats.snapshot()["requests"] == 3


async def test_page_renders_with_the_cache_down() -> None:
    async with stack(cache=False) as (app, base, _), aiohttp.ClientSession() as s:
        for _ in range(2):  # the second request meets an ejected server: no connect at all
            async with s.get(base + "/") as r:
                assert r.status == 200
                assert "cache unavailable" in await r.text()
        for _ in range(2):  # the slow page still works, it is just never cached
            async with s.get(base + "/slow/3") as r:
                assert r.status == 200 and r.headers["X-Cache"] == "MISS"
                assert await r.text() == "sum of squares 0..3 = 14\n"
        assert app.stats.snapshot()["cache_errors"] >= 2


async def test_slow_page_miss_then_hit() -> None:
    async with stack() as (_app, base, _), aiohttp.ClientSession() as s:
        bodies = []
        for expected in ("MISS", "HIT", "HIT"):
            async with s.get(base + "/slow/1") as r:
                assert r.status == 200 and r.headers["X-Cache"] == expected
                bodies.append(await r.text())
        assert bodies == ["sum of squares 0..1 = 1\n"] * 3
        async with s.get(base + "/slow/2") as r:
            assert r.headers["X-Cache"] == "MISS"
        async with s.get(base + "/slow/abc") as r:
            assert r.status == 404


async def test_files_reproxy_or_served(files_dir: Path) -> None:
    async with stack(files_dir) as (_app, base, _), aiohttp.ClientSession() as s:
        caps = {"X-Proxy-Capabilities": "reproxy-file"}
        async with s.get(base + "/files/index.html", headers=caps) as r:
            assert r.status == 200 and await r.read() == b""
            assert r.headers["X-REPROXY-FILE"] == str((files_dir / "index.html").resolve())
            assert r.headers["Content-Type"] == "text/html"
        async with s.get(base + "/files/index.html") as r:  # no proxy in front: the app sends it
            assert r.status == 200 and await r.read() == PAGE
            assert "X-REPROXY-FILE" not in r.headers
        async with s.get(base + "/health") as r:
            assert r.status == 200 and await r.text() == "ok\n"


async def raw_status(base: str, target: str) -> int:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1])
    finally:
        writer.close()


async def test_files_refuse_traversal(files_dir: Path) -> None:
    targets = [
        "/files/..%2Fsecret.txt",
        "/files/%2e%2e",
        "/files/..",
        "/files/../secret.txt",
        "/files/a%00b",
        "/files/link.txt",  # a symlink leading out of files_dir
        "/files/missing.html",
        "/files/",
    ]
    async with stack(files_dir) as (_app, base, _):
        for target in targets:
            assert await raw_status(base, target) == 404, target
    async with stack(None) as (_app, base, _):  # no files_dir: the feature is off
        assert await raw_status(base, "/files/index.html") == 404
    for name in ("", ".", "..", "../secret.txt", "a/b", "a\\b", "a\0b", "link.txt"):
        assert safe_file(files_dir, name) is None, name
    assert safe_file(files_dir, "index.html") == (files_dir / "index.html").resolve()


async def test_through_the_proxy_the_file_is_reproxied(files_dir: Path) -> None:
    async with stack(files_dir) as (app, _base, _), AsyncExitStack() as es:
        table = {
            "pools": {
                "apps": {
                    "backends": [{"address": app.addresses()["listen"]}],
                    "health": {"enabled": False},
                }
            },
            "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
        }
        cfg = config_from_dict(ProxyConfig, table, table_name="proxy")
        proxy = await es.enter_async_context(running_service(ProxyService, cfg))
        front = f"http://{proxy.addresses()['web']}"
        s = await es.enter_async_context(aiohttp.ClientSession())
        async with s.get(front + "/files/index.html") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/html"
            assert await r.read() == PAGE
            assert "X-REPROXY-FILE" not in r.headers
        assert proxy.stats.snapshot()["web_reproxy_file"] == 1  # the proxy sent it, not the app
        async with s.get(front + "/") as r:
            assert r.status == 200 and "visit number 1." in await r.text()


async def test_stop_lets_a_request_in_flight_finish() -> None:
    async with stack() as (app, base, _), aiohttp.ClientSession() as s:
        started = asyncio.Event()
        query = app._query

        async def watched_query(n: int) -> bytes:
            started.set()
            return await query(n)

        app._query = watched_query  # type: ignore[method-assign]

        async def fetch() -> tuple[int, str]:
            async with s.get(base + "/slow/4") as r:
                return r.status, await r.text()

        request = asyncio.create_task(fetch())
        await started.wait()  # the handler is inside its "database query" now
        await app.stop()
        assert await request == (200, "sum of squares 0..4 = 30\n")
        with pytest.raises(aiohttp.ClientConnectionError):
            await s.get(base + "/health")
