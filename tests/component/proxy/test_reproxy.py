"""Perlbal reproxy semantics: X-REPROXY-URL lists, FILE, CACHE-FOR, and X-Accel-Redirect."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from proxy_helpers import (
    HITS,
    Blackhole,
    dead_address,
    make_backend,
    make_storage,
    proxy_addr,
    raw_request,
    run_proxy,
    serve_app,
)


def table(app: str, **listener: Any) -> dict[str, Any]:
    return {
        "pools": {"apps": {"backends": [{"address": app}], "health": {"enabled": False}}},
        "listeners": {
            "web": {
                "listen": "127.0.0.1:0",
                "pool": "apps",
                "reproxy_connect_timeout": 1.0,
                "reproxy_response_timeout": 0.5,
                **listener,
            }
        },
    }


async def setup(stack: AsyncExitStack, storage_root: Path, answers: dict[str, dict[str, str]],
                **listener: Any) -> tuple[str, aiohttp.ClientSession, Any, Any]:
    storage_app = make_storage(storage_root)
    st = await stack.enter_async_context(serve_app(storage_app))
    backend_app = make_backend("app", {"reproxy": answers})
    app = await stack.enter_async_context(serve_app(backend_app))
    svc = await stack.enter_async_context(run_proxy(table(app, **listener)))
    h, p = proxy_addr(svc)
    session = await stack.enter_async_context(aiohttp.ClientSession())
    return f"http://{h}:{p}", session, svc, (st, storage_app)


async def test_reproxy_url_basic(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, s, svc, (st, _sapp) = await setup(stack, storage_root, answers)
        answers["a"] = {
            "X-REPROXY-URL": f"http://{st}/small.bin",
            "Content-Type": "image/png",
            "X-App": "kept",
        }
        async with s.get(base + "/file/a") as r:
            body = await r.read()
            assert r.status == 200
            assert body == (storage_root / "small.bin").read_bytes()
            assert r.headers["Content-Type"] == "image/png"
            assert r.headers["X-App"] == "kept"
            assert r.headers["Content-Length"] == "1000"
            assert "X-Storage" not in r.headers
            assert "X-REPROXY-URL" not in r.headers
        async with s.head(base + "/file/a") as r:
            assert r.status == 200 and r.headers["Content-Length"] == "1000"
        # 1 MiB streams through with backpressure
        answers["big"] = {"X-REPROXY-URL": f"http://{st}/big.bin"}
        async with s.get(base + "/file/big") as r:
            assert await r.read() == (storage_root / "big.bin").read_bytes()
        assert svc.fronts["web"].storage.idle.count() >= 1  # storage connection pooled


async def test_fallthrough_rules_and_dead_host_memory(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, s, svc, (st, _sapp) = await setup(stack, storage_root, answers)
        dead = dead_address()
        answers["dead"] = {"X-REPROXY-URL": f"http://{dead}/small.bin http://{st}/small.bin"}
        answers["404"] = {"X-REPROXY-URL": f"http://{st}/missing http://{st}/small.bin"}
        answers["size"] = {
            "X-REPROXY-URL": f"http://{st}/big.bin http://{st}/small.bin",
            "X-REPROXY-EXPECTED-SIZE": "1000",
        }
        answers["none"] = {"X-REPROXY-URL": f"http://{dead}/x http://{st}/missing"}
        answers["junk"] = {"X-REPROXY-URL": "ftp://x/y http://host.name/z"}
        answers["204"] = {":status": "204", "X-REPROXY-URL": f"http://{st}/small.bin"}
        for key in ("dead", "404", "size", "204"):
            async with s.get(base + f"/file/{key}") as r:
                assert r.status == 200, key
                assert len(await r.read()) == 1000, key
        storage = svc.fronts["web"].storage
        attempts = storage.attempts
        async with s.get(base + "/file/dead") as r:
            assert r.status == 200
        # the dead host was remembered: tried last, so only one attempt this time
        assert storage.attempts == attempts + 1
        # the URL that answered 404 is remembered too: the good one is tried first now
        attempts = storage.attempts
        async with s.get(base + "/file/404") as r:
            assert r.status == 200
        assert storage.attempts == attempts + 1
        for key in ("none", "junk"):
            async with s.get(base + f"/file/{key}") as r:
                assert r.status == 503, key


async def test_black_holed_storage_falls_through(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        hole = await stack.enter_async_context(Blackhole())
        answers: dict[str, dict[str, str]] = {}
        base, s, _svc, (st, _sapp) = await setup(stack, storage_root, answers)
        answers["a"] = {"X-REPROXY-URL": f"http://{hole.address}/small.bin http://{st}/small.bin"}
        t0 = time.monotonic()
        async with s.get(base + "/file/a") as r:
            assert r.status == 200 and len(await r.read()) == 1000
        assert time.monotonic() - t0 < 10  # first-byte timeout (0.5 s), not Perlbal's 30 s
        async with s.get(base + "/file/a") as r:  # remembered: no second wait
            assert r.status == 200


async def test_range_and_416(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, s, _svc, (st, _sapp) = await setup(stack, storage_root, answers)
        answers["a"] = {"X-REPROXY-URL": f"http://{st}/small.bin"}
        async with s.get(base + "/file/a", headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206
            assert await r.read() == b"0123456789"
            assert r.headers["Content-Range"] == "bytes 10-19/1000"
        async with s.get(base + "/file/a", headers={"Range": "bytes=5000-"}) as r:
            assert r.status == 416
            assert r.headers["Content-Range"] == "bytes */1000"
        async with s.get(base + "/file/a") as r:  # the connection is still good
            assert r.status == 200


async def test_reproxy_file(storage_root: Path, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, s, _svc, _ = await setup(stack, storage_root, answers)
        answers["f"] = {"X-REPROXY-FILE": str(storage_root / "big.bin"), "Content-Type": "a/b"}
        answers["missing"] = {"X-REPROXY-FILE": str(storage_root / "nope")}
        answers["wrong"] = {
            "X-REPROXY-FILE": str(storage_root / "small.bin"),
            "X-REPROXY-EXPECTED-SIZE": "5",
        }
        async with s.get(base + "/file/f") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "a/b"
            assert await r.read() == (storage_root / "big.bin").read_bytes()
        for key in ("missing", "wrong"):
            async with s.get(base + f"/file/{key}") as r:
                assert r.status == 404


async def test_reproxy_cache_for(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, s, svc, (st, _sapp) = await setup(stack, storage_root, answers)
        lm = "Wed, 01 Jan 2025 00:00:00 GMT"
        answers["c"] = {
            "X-REPROXY-URL": f"http://{st}/small.bin",
            "X-REPROXY-CACHE-FOR": "60; Last-Modified Content-Type",
            "Last-Modified": lm,
            "Content-Type": "text/x-cached",
        }
        async with s.get(base + "/file/c") as r:
            assert r.status == 200
        answers["c"] = {":status": "500"}  # the app is not asked again
        async with s.get(base + "/file/c") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/x-cached"
            assert len(await r.read()) == 1000
        ims = {"If-Modified-Since": lm + "; length=1000"}
        async with s.get(base + "/file/c", headers=ims) as r:
            assert r.status == 304
        assert svc.fronts["web"].cache.hits == 2


async def test_accel_redirect_internal_location(storage_root: Path) -> None:
    async with AsyncExitStack() as stack:
        st = await stack.enter_async_context(serve_app(make_storage(storage_root)))
        answers: dict[str, dict[str, str]] = {}
        app = await stack.enter_async_context(
            serve_app(make_backend("app", {"reproxy": answers}))
        )
        t = table(app, routes=[
            {"path_prefix": "/_reproxy/", "pool": "storage", "internal": True,
             "strip_prefix": True},
            {"path_prefix": "/_files/", "static_root": str(storage_root), "internal": True,
             "strip_prefix": True},
        ])
        t["pools"]["storage"] = {
            "backends": [{"address": dead_address()}, {"address": st}],
            "balance": "round_robin",
            "health": {"enabled": False},
        }
        svc = await stack.enter_async_context(run_proxy(t))
        h, p = proxy_addr(svc)
        answers["x"] = {"X-Accel-Redirect": "/_reproxy/small.bin"}
        answers["s"] = {"X-Accel-Redirect": "/_files/small.bin"}
        async with aiohttp.ClientSession() as s:
            for _ in range(3):  # the dead storage member costs a retry, never an error
                async with s.get(f"http://{h}:{p}/file/x") as r:
                    assert r.status == 200 and len(await r.read()) == 1000
            async with s.get(f"http://{h}:{p}/file/s") as r:
                assert r.status == 200 and len(await r.read()) == 1000
            async with s.get(f"http://{h}:{p}/_reproxy/small.bin") as r:
                assert r.status == 404  # internal only


async def test_pipelined_reproxy_requests(storage_root: Path) -> None:
    """Pipelined requests that each reproxy are answered in order over pooled connections."""
    async with AsyncExitStack() as stack:
        answers: dict[str, dict[str, str]] = {}
        base, _s, _svc, (st, sapp) = await setup(stack, storage_root, answers)
        answers["a"] = {"X-REPROXY-URL": f"http://{st}/small.bin"}
        h, p = base[7:].split(":")
        one = b"GET /file/a HTTP/1.1\r\nHost: x\r\n\r\n"
        data = await raw_request(h, int(p), one * 3 + b"GET /file/a HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
        assert data.count(b"HTTP/1.1 200 OK") == 4
        assert len(sapp[HITS]) == 4
