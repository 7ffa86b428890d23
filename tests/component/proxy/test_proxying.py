"""The proxy in-process against aiohttp backends: HTTP/1.1 behaviour and balancing."""

from __future__ import annotations

import asyncio
import collections

import aiohttp
from proxy_helpers import (
    jsonb,
    make_backend,
    proxy_addr,
    raw_request,
    run_proxy,
    serve_app,
    wait_for,
)


def two_pools(a: str, b: str, **pool: object) -> dict[str, object]:
    return {
        "pools": {"apps": {"backends": [{"address": a}, {"address": b}], **pool}},
        "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
    }


async def test_round_robin_keepalive_and_pooling() -> None:
    async with serve_app(make_backend("a")) as a, serve_app(make_backend("b")) as b:
        async with run_proxy(two_pools(a, b)) as svc:
            h, p = proxy_addr(svc)
            seen = collections.Counter()
            async with aiohttp.ClientSession() as s:
                for _ in range(10):
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.status == 200
                        seen[r.headers["X-Backend"]] += 1
            assert seen == {"a": 5, "b": 5}
            snap = svc.pool_stats()["apps"]
            assert all(b["idle_connections"] >= 1 for b in snap["backends"])
            assert sum(b["requests"] for b in snap["backends"]) == 10


async def test_pipelined_requests_answered_in_order() -> None:
    async with serve_app(make_backend("a")) as a:
        async with run_proxy(
            {
                "pools": {"apps": {"backends": [{"address": a}]}},
                "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
            }
        ) as svc:
            h, p = proxy_addr(svc)
            reqs = (
                b"GET /headers?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /headers?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            data = await raw_request(h, p, reqs)
            assert data.count(b"HTTP/1.1 200 OK") == 3
            i1, i2, i3 = data.find(b"n=1"), data.find(b"hello"), data.find(b"n=3")
            assert 0 < i1 < i2 < i3


async def test_head_chunked_and_http10() -> None:
    async with serve_app(make_backend("a")) as a:
        async with run_proxy(
            {
                "pools": {"apps": {"backends": [{"address": a}]}},
                "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
            }
        ) as svc:
            h, p = proxy_addr(svc)
            data = await raw_request(
                h, p, b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")
            assert b"Content-Length: 13" in data
            data = await raw_request(
                h, p, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert b"Transfer-Encoding: chunked" in data and data.endswith(b"0\r\n\r\n")
            data = await raw_request(h, p, b"GET /stream HTTP/1.0\r\n\r\n")
            assert b"chunked" not in data and data.endswith(b"part4\n")
            # chunked request body is re-chunked to the backend
            data = await raw_request(
                h,
                p,
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
            assert data.endswith(b"hello world")


async def test_expect_100_continue() -> None:
    async with serve_app(make_backend("a")) as a:
        async with run_proxy(
            {
                "pools": {"apps": {"backends": [{"address": a}]}},
                "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
            }
        ) as svc:
            h, p = proxy_addr(svc)
            reader, writer = await asyncio.open_connection(h, p)
            writer.write(
                b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert line.startswith(b"HTTP/1.1 100 Continue")
            writer.write(b"body")
            rest = await asyncio.wait_for(reader.read(), 10)
            assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"body")
            writer.close()


async def test_x_forwarded_for_trust_model() -> None:
    async with serve_app(make_backend("a")) as a:
        table = {
            "pools": {"apps": {"backends": [{"address": a}]}},
            "listeners": {
                "web": {"listen": "127.0.0.1:0", "pool": "apps"},
                "trusting": {
                    "listen": "127.0.0.1:0",
                    "pool": "apps",
                    "trusted_proxies": ["127.0.0.0/8"],
                },
            },
        }
        async with run_proxy(table) as svc:
            req = (
                b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
                b"X-Host: evil\r\nX-Forwarded-Proto: https\r\n"
                b"X-Proxy-Capabilities: fake\r\nConnection: close\r\n\r\n"
            )
            hdrs = jsonb(await raw_request(*proxy_addr(svc, "web"), req))["headers"]
            assert hdrs["X-Forwarded-For"] == "127.0.0.1"
            assert hdrs["X-Forwarded-Proto"] == "http"
            assert "X-Host" not in hdrs
            assert hdrs["X-Proxy-Capabilities"] == "reproxy-file"
            hdrs = jsonb(await raw_request(*proxy_addr(svc, "trusting"), req))["headers"]
            assert hdrs["X-Forwarded-For"] == "6.6.6.6, 127.0.0.1"
            assert hdrs["X-Forwarded-Proto"] == "https"
            assert hdrs["X-Host"] == "evil"


async def test_limits_and_garbage() -> None:
    async with serve_app(make_backend("a")) as a:
        table = {
            "pools": {"apps": {"backends": [{"address": a}]}},
            "listeners": {
                "web": {
                    "listen": "127.0.0.1:0",
                    "pool": "apps",
                    "max_request_line_bytes": 100,
                    "max_header_bytes": 1024,
                    "max_headers": 10,
                    "max_body_bytes": 1000,
                }
            },
        }
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            cases = [
                (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
                (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 20 + b"\r\n", b"431"),
                (b"GET / HTTP/1.1\r\nX: " + b"y" * 2000 + b"\r\n\r\n", b"431"),
                (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", b"413"),
                (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n", b"400"),
                (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host in HTTP/1.1
                (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", b"505"),
            ]
            for raw, code in cases:
                data = await raw_request(h, p, raw)
                assert data.startswith(b"HTTP/1.1 " + code), (raw[:40], data[:60])
            # the service survived all of that
            data = await raw_request(h, p, b"GET /hello HTTP/1.0\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200")


async def test_slowloris_header_timeout_and_idle_timeout() -> None:
    async with serve_app(make_backend("a")) as a:
        table = {
            "pools": {"apps": {"backends": [{"address": a}]}},
            "listeners": {
                "web": {
                    "listen": "127.0.0.1:0",
                    "pool": "apps",
                    "header_timeout": 0.5,
                    "client_idle_timeout": 0.5,
                }
            },
        }
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            reader, writer = await asyncio.open_connection(h, p)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            got = b""
            # keep dribbling header bytes: the head deadline still closes the connection
            for _ in range(100):
                if reader.at_eof():
                    break
                writer.write(b"X-a: b\r\n")
                try:
                    got += await asyncio.wait_for(reader.read(1000), 0.1)
                except TimeoutError:
                    continue
                if got:
                    break
            got += await asyncio.wait_for(reader.read(), 10)
            assert got.startswith(b"HTTP/1.1 408")
            writer.close()
            # an idle keep-alive connection is closed silently
            reader, writer = await asyncio.open_connection(h, p)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()


async def test_routing_by_host_and_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f.txt").write_text("static file\n")
    async with serve_app(make_backend("a")) as a, serve_app(make_backend("b")) as b:
        table = {
            "pools": {
                "pa": {"backends": [{"address": a}]},
                "pb": {"backends": [{"address": b}]},
            },
            "listeners": {
                "web": {
                    "listen": "127.0.0.1:0",
                    "routes": [
                        {"host": "b.example", "pool": "pb"},
                        {"host": "*.wild.example", "path_prefix": "/hello", "pool": "pb"},
                        {"path_prefix": "/assets/", "static_root": str(tmp_path),
                         "strip_prefix": True},
                        {"path_prefix": "/app/", "pool": "pa", "strip_prefix": True},
                    ],
                }
            },
        }
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                base = f"http://{h}:{p}"
                async with s.get(base + "/hello", headers={"Host": "b.example:80"}) as r:
                    assert r.headers["X-Backend"] == "b"
                async with s.get(base + "/hello", headers={"Host": "x.wild.example"}) as r:
                    assert r.headers["X-Backend"] == "b"
                async with s.get(base + "/app/hello") as r:
                    assert r.headers["X-Backend"] == "a"
                async with s.get(base + "/assets/f.txt") as r:
                    assert await r.text() == "static file\n"
                async with s.get(base + "/nothing") as r:
                    assert r.status == 404


async def test_weighted_least_conn_and_affinity() -> None:
    async with serve_app(make_backend("a")) as a, serve_app(make_backend("b")) as b:
        table = {
            "pools": {
                "apps": {
                    "backends": [{"address": a, "weight": 3}, {"address": b, "weight": 1}],
                    "balance": "weighted",
                    "affinity_cookie": "HSID",
                }
            },
            "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
        }
        async with run_proxy(table) as svc:
            h, p = proxy_addr(svc)
            seen: collections.Counter[str] = collections.Counter()
            for _ in range(8):
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://{h}:{p}/hello") as r,
                ):
                    seen[r.headers["X-Backend"]] += 1
                    assert "HSID=" in r.headers["Set-Cookie"]
            assert seen == {"a": 6, "b": 2}
            # with the cookie every request sticks to one backend
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                async with s.get(f"http://{h}:{p}/hello") as r:
                    first = r.headers["X-Backend"]
                for _ in range(6):
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.headers["X-Backend"] == first
                        assert "Set-Cookie" not in r.headers


async def test_least_conn_prefers_idle_backend() -> None:
    async with serve_app(make_backend("a")) as a, serve_app(make_backend("b")) as b:
        async with run_proxy(two_pools(a, b, balance="least_conn")) as svc:
            pool = svc.pools["apps"]
            busy = pool.state.backends[0]
            busy.active += 5  # pretend a is busy
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                for _ in range(4):
                    async with s.get(f"http://{h}:{p}/hello") as r:
                        assert r.headers["X-Backend"] == "b"
            busy.active -= 5


async def test_http10_keep_alive() -> None:
    async with serve_app(make_backend("a")) as a:
        async with run_proxy(
            {
                "pools": {"apps": {"backends": [{"address": a}]}},
                "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
            }
        ) as svc:
            h, p = proxy_addr(svc)
            reader, writer = await asyncio.open_connection(h, p)
            for _ in range(2):
                writer.write(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert b"Connection: keep-alive" in head
                n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                assert await reader.readexactly(n) == b"hello from a\n"
            writer.close()


async def test_graceful_stop_finishes_in_flight_request() -> None:
    gate = asyncio.Event()

    async def slow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await gate.wait()
        return aiohttp.web.Response(text="finished")

    app = make_backend("a")
    app.router.add_get("/slow", slow)
    async with serve_app(app) as a:
        async with run_proxy(
            {
                "pools": {"apps": {"backends": [{"address": a}], "health": {"enabled": False}}},
                "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps"}},
            }
        ) as svc:
            h, p = proxy_addr(svc)
            async with aiohttp.ClientSession() as s:
                pending = asyncio.ensure_future(s.get(f"http://{h}:{p}/slow"))
                await wait_for(lambda: svc.pools["apps"].state.backends[0].active == 1)
                stopping = asyncio.ensure_future(svc.stop())
                await wait_for(lambda: not svc.tcp_listeners[0].accepting)
                gate.set()
                r = await pending
                assert r.status == 200 and await r.text() == "finished"
                assert r.headers.get("Connection") == "close"
                await asyncio.wait_for(stopping, 10)
