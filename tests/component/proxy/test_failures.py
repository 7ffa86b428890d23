"""Killed, hung and unhealthy backends; slots and the bounded queue; admin commands; reload."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import aiohttp
from proxy_helpers import (
    STATE,
    Blackhole,
    dead_address,
    make_backend,
    proxy_addr,
    run_proxy,
    serve_app,
    wait_for,
)

from hastack.config import config_from_dict
from hastack.proxy.config import ProxyConfig

FAST_HEALTH = {"path": "/health", "check_interval": 0.2, "check_timeout": 0.3, "rise": 2,
               "fall": 2}


def pool_table(backends: list[str], **pool: Any) -> dict[str, Any]:
    return {
        "pools": {"apps": {"backends": [{"address": b} for b in backends], **pool}},
        "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
    }


async def test_killed_backend_costs_no_failed_request() -> None:
    async with serve_app(make_backend("a")) as a:
        b_ctx = serve_app(make_backend("b"))
        b = await b_ctx.__aenter__()
        async with run_proxy(pool_table([a, b], health=FAST_HEALTH)) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                for _ in range(4):
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.status == 200
                await b_ctx.__aexit__(None, None, None)  # b is gone (refuses connections)
                for _ in range(20):
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.status == 200
                        assert r.headers["X-Backend"] == "a"
            snap = {x["address"]: x for x in svc.pool_stats()["apps"]["backends"]}
            assert snap[b]["state"] in ("ejected", "down")


async def test_hung_backend_costs_at_most_one_retry() -> None:
    async with serve_app(make_backend("a")) as a, Blackhole() as hole:
        table = pool_table([a, hole.address], health=FAST_HEALTH, response_timeout=30.0)
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            t0 = time.monotonic()
            async with aiohttp.ClientSession() as s:

                async def one() -> int:
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        await r.read()
                        return r.status

                statuses = await asyncio.gather(*(one() for _ in range(10)))
            assert statuses == [200] * 10
            # moved by the health checks (~0.5 s here), far below the 30 s response timeout
            assert time.monotonic() - t0 < 15
            await wait_for(lambda: svc.pool_stats()["apps"]["backends"][1]["state"] == "down")


async def test_post_is_not_retried_but_answered() -> None:
    dead = dead_address()
    async with run_proxy(pool_table([dead], health={"enabled": False})) as svc:
        h, p = proxy_addr(svc)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://{h}:{p}/echo", data=b"x") as r:
                assert r.status == 502
            # the backend is now ejected: a clear 503, not a hang or a silent close
            async with s.get(f"http://{h}:{p}/hello") as r:
                assert r.status == 503


async def test_active_checks_rise_and_fall() -> None:
    app = make_backend("a")
    async with serve_app(app) as a:
        async with run_proxy(pool_table([a], health=FAST_HEALTH)) as svc:
            b = svc.pools["apps"].state.backends[0]
            app[STATE]["healthy"] = False
            await wait_for(lambda: not b.up)
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://{h}:{p}/hello") as r:
                    assert r.status == 503
                app[STATE]["healthy"] = True
                await wait_for(lambda: b.up)
                async with s.get(f"http://{h}:{p}/hello") as r:
                    assert r.status == 200


async def test_max_connections_queue_overflow_and_timeout() -> None:
    async with Blackhole() as hole:
        table = pool_table(
            [hole.address],
            health={"enabled": False},
            max_connections_per_backend=1,
            max_queue=1,
            queue_timeout=0.5,
            response_timeout=1.5,
            retries=0,
        )
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:

                async def one() -> int:
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        await r.read()
                        return r.status

                statuses = sorted(await asyncio.gather(*(one() for _ in range(3))))
            # one waits on the hung backend (504), one times out in the queue (503),
            # one finds the queue full (503): every client gets a status, nobody hangs
            assert statuses == [503, 503, 504]
            pool = svc.pools["apps"]
            assert pool.queue_overflows == 1 and pool.queue_timeouts == 1


async def test_admin_commands_and_status() -> None:
    async with serve_app(make_backend("a")) as a, serve_app(make_backend("b")) as b:
        table = pool_table([a], health={"enabled": False})
        cfg = config_from_dict(ProxyConfig, table, table_name="proxy")
        from aiohttp import web

        from hastack.proxy.server import ProxyService
        from hastack.testing import running_service

        async with running_service(ProxyService, cfg) as svc:
            admin = web.Application()
            admin.add_routes(svc.admin_routes())
            runner = web.AppRunner(admin)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            admin_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            try:
                base = f"http://127.0.0.1:{admin_port}/proxy"
                h, p = proxy_addr(svc)
                async with aiohttp.ClientSession() as s:
                    async with s.post(f"{base}/pools/apps/backends", json={"address": b}) as r:
                        assert r.status == 200
                    seen = set()
                    for _ in range(4):
                        async with s.get(f"http://{h}:{p}/hello") as r:
                            seen.add(r.headers["X-Backend"])
                    assert seen == {"a", "b"}
                    async with s.post(f"{base}/pools/apps/backends/{a}/drain") as r:
                        assert r.status == 200
                    for _ in range(4):
                        async with s.get(f"http://{h}:{p}/hello") as r:
                            assert r.headers["X-Backend"] == "b"
                    async with s.get(f"{base}/pools") as r:
                        snap = await r.json()
                        states = {x["address"]: x["state"] for x in snap["apps"]["backends"]}
                        assert states == {a: "draining", b: "up"}
                    snap = svc.stats.snapshot()
                    assert snap["pool_apps_backends_up"] == 1 and snap["web_requests"] >= 8
                    async with s.get(f"{base}/status") as r:
                        assert "text/html" in r.headers["Content-Type"]
                        assert b in await r.text()
                    async with s.delete(f"{base}/pools/apps/backends/{b}") as r:
                        assert r.status == 200
                    async with s.post(f"{base}/pools/apps/backends/{a}/enable") as r:
                        assert r.status == 200
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.headers["X-Backend"] == "a"
            finally:
                await runner.cleanup()


async def test_reload_keeps_in_flight_requests() -> None:
    gate = asyncio.Event()

    async def slow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await gate.wait()
        return aiohttp.web.Response(text="slow done")

    app_a = make_backend("a")
    app_a.router.add_get("/slow", slow)
    async with serve_app(app_a) as a, serve_app(make_backend("b")) as b:
        async with run_proxy(pool_table([a], health={"enabled": False})) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                pending = asyncio.ensure_future(s.get(f"http://{h}:{p}/slow"))
                await wait_for(lambda: svc.pools["apps"].state.backends[0].active == 1)
                new = config_from_dict(ProxyConfig, pool_table([b]), table_name="proxy")
                new = replace(new)
                await svc.reload(new)
                async with s.get(f"http://{h}:{p}/hello") as r:
                    assert r.headers["X-Backend"] == "b"
                gate.set()
                r = await pending
                assert r.status == 200 and await r.text() == "slow done"
                r.release()


async def test_stale_pooled_connection_is_retried_on_a_fresh_one() -> None:
    """A backend that drops a keep-alive connection instead of answering its second request
    (the idle-close race) costs no error, even for a non-idempotent bodyless request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if served == 1:
                writer.close()  # closes instead of answering the second request
                return
            served += 1
            assert head
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with run_proxy(pool_table([f"127.0.0.1:{port}"], health={"enabled": False})) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                for method in ("GET", "POST", "DELETE"):
                    async with s.request(method, f"http://{h}:{p}/x") as r:
                        assert r.status == 200, method
            assert svc.pools["apps"].state.backends[0].failures == 0
    finally:
        server.close()
