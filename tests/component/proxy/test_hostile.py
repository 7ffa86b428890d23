"""Hostile clients: smuggling attempts, floods that never read, oversized chunked bodies."""

from __future__ import annotations

import asyncio

from proxy_helpers import make_backend, proxy_addr, raw_request, run_proxy, serve_app


def table(app: str, **listener: object) -> dict[str, object]:
    return {
        "pools": {"apps": {"backends": [{"address": app}], "health": {"enabled": False}}},
        "listeners": {"web": {"listen": "127.0.0.1:0", "pool": "apps", **listener}},
    }


async def test_smuggling_shapes_are_refused() -> None:
    async with serve_app(make_backend("a")) as a, run_proxy(table(a)) as svc:
        h, p = proxy_addr(svc)
        for raw in [
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n"
            b"\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;\x00\r\nhello\r\n0\r\n\r\n",
        ]:
            data = await raw_request(h, p, raw)
            assert data.split(b" ", 2)[1] in (b"400", b"501"), (raw, data[:60])
            assert data.count(b"HTTP/1.1 ") == 1  # nothing smuggled behind the error


async def test_chunked_body_over_the_limit_is_413() -> None:
    async with serve_app(make_backend("a")) as a, run_proxy(table(a, max_body_bytes=1000)) as svc:
        h, p = proxy_addr(svc)
        reader, writer = await asyncio.open_connection(h, p)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b"100\r\n" + b"x" * 256 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # the proxy closed on us: fine, the status was sent first
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert data.startswith(b"HTTP/1.1 413")


async def test_pipelining_flood_without_reading_stays_bounded() -> None:
    async with serve_app(make_backend("a")) as a, run_proxy(
        table(a, max_buffer_bytes=4096, send_timeout=2.0)
    ) as svc:
        h, p = proxy_addr(svc)
        _reader, writer = await asyncio.open_connection(h, p)
        one = b"GET /big/100000 HTTP/1.1\r\nHost: x\r\n\r\n"
        peak = 0
        front = svc.fronts["web"]
        try:
            for _ in range(300):
                writer.write(one * 20)
                await asyncio.wait_for(writer.drain(), 0.2)
                for c in front.connections:
                    peak = max(peak, len(c.parser.buf))
        except (TimeoutError, ConnectionError):
            pass  # the proxy stopped reading from us: that is the point
        for c in front.connections:
            peak = max(peak, len(c.parser.buf))
        # bounded by the read-ahead limit plus one socket read, however much we send
        assert peak <= 4096 + 256 * 1024
        writer.close()
        # the proxy still serves others
        data = await raw_request(h, p, b"GET /hello HTTP/1.0\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")


async def test_slow_client_backpressure_reaches_the_backend() -> None:
    """A client that stops reading stops the backend too (bounded buffers, no unbounded read)."""
    import time

    from aiohttp import web

    state = {"streamed": 0, "write_started": 0.0, "in_write": False}
    total = 64 * 1024 * 1024
    chunk = b"z" * 65536

    async def firehose(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = total
        await resp.prepare(request)
        for _ in range(total // len(chunk)):
            state["in_write"], state["write_started"] = True, time.monotonic()
            await resp.write(chunk)
            state["in_write"] = False
            state["streamed"] += len(chunk)
        return resp

    app = make_backend("a")
    app.router.add_get("/firehose", firehose)
    async with serve_app(app) as a, run_proxy(table(a)) as svc:
        h, p = proxy_addr(svc)
        reader, writer = await asyncio.open_connection(h, p)
        writer.write(b"GET /firehose HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 30
        # wait until the backend is stuck in a write: the proxy stopped reading from it
        while not (state["in_write"] and time.monotonic() - state["write_started"] > 0.5):
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.05)
        assert state["streamed"] < total // 2  # socket buffers + the proxy's bounded read-ahead
        got = 0
        while got < total:
            data = await asyncio.wait_for(reader.read(1 << 20), 30)
            assert data
            got += len(data) if got else len(data.split(b"\r\n\r\n", 1)[1])
        assert state["streamed"] == total
        writer.close()


async def test_early_413_survives_a_client_still_sending() -> None:
    """The 413 goes out before the body is read; closing must not reset it away (lingering)."""
    async with serve_app(make_backend("a")) as a, run_proxy(table(a, max_body_bytes=1000)) as svc:
        h, p = proxy_addr(svc)
        reader, writer = await asyncio.open_connection(h, p)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n")
        sent = 0
        try:
            while sent < 4_000_000:
                writer.write(b"y" * 65536)
                sent += 65536
                await asyncio.wait_for(writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            pass  # the proxy stopped reading or closed: expected at some point
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert data.startswith(b"HTTP/1.1 413")
