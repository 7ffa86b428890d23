"""TcpListener, stream connections, UDP and the admin endpoint on real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from hastack.config import Address
from hastack.core.admin import AdminServer
from hastack.core.net import ConnectionProtocol, serve_tcp, serve_udp
from hastack.echo.config import EchoConfig
from hastack.echo.server import EchoService
from hastack.testing import running_service, wait_until

LOOPBACK = Address("127.0.0.1", 0)


class Hold(ConnectionProtocol):
    """Keeps the connection open and says hello so the client knows it was accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.write(b"hello\n")  # type: ignore[attr-defined]


async def test_reject_mode_answers_and_counts() -> None:
    def reject(sock: socket.socket) -> None:
        sock.send(b"ERROR Too many open connections\r\n")

    listener = await serve_tcp(LOOPBACK, Hold, max_connections=2, on_reject=reject)
    host, port = listener.address
    held = [await asyncio.open_connection(host, port) for _ in range(2)]
    for reader, _ in held:
        assert await reader.readline() == b"hello\n"
    reader, writer = await asyncio.open_connection(host, port)
    assert await reader.readline() == b"ERROR Too many open connections\r\n"
    assert await reader.read() == b""  # closed after the message
    assert listener.rejected == 1 and listener.connections == 2
    writer.close()
    for _, w in held:
        w.close()
    await listener.shutdown(timeout=2)
    assert listener.connections == 0


async def test_pause_mode_stops_accepting_until_a_slot_frees() -> None:
    listener = await serve_tcp(LOOPBACK, Hold, max_connections=1)
    host, port = listener.address
    r1, w1 = await asyncio.open_connection(host, port)
    assert await r1.readline() == b"hello\n"
    # The kernel completes the handshake (backlog) but we do not accept: no hello yet.
    r2, w2 = await asyncio.open_connection(host, port)
    await wait_until(lambda: listener.listen_disabled_num >= 1)
    assert listener.connections == 1
    w1.close()
    assert await asyncio.wait_for(r2.readline(), 5) == b"hello\n"
    assert listener.listen_disabled_num >= 1 and listener.rejected == 0
    w2.close()
    await listener.shutdown(timeout=2)


async def test_graceful_shutdown_lets_stream_handlers_finish() -> None:
    finished = asyncio.Event()
    started = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(3)
        started.set()
        data += await reader.read()  # until EOF: graceful_close feeds EOF after buffered bytes
        writer.write(b"got " + data)
        await writer.drain()
        finished.set()

    async with running_service(EchoService, EchoConfig(listen=LOOPBACK)) as svc:
        listener = await svc.listen_tcp_streams(LOOPBACK, handler, name="streams")
        reader, writer = await asyncio.open_connection(*listener.address)
        writer.write(b"partial")
        await writer.drain()
        await asyncio.wait_for(started.wait(), 5)
    # leaving the block ran svc.stop(): the handler saw EOF, answered, and the listener closed
    assert finished.is_set()
    assert await reader.read() == b"got partial"
    assert listener.connections == 0
    writer.close()


async def test_udp_listener_reports_its_buffer() -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            received.put_nowait(data)

    udp = await serve_udp(LOOPBACK, Sink, rcvbuf_bytes=4 * 1024 * 1024)
    assert udp.rcvbuf_bytes >= 256 * 1024
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"ping", tuple(udp.address))
    assert await asyncio.wait_for(received.get(), 5) == b"ping"
    udp.close()


async def test_admin_endpoint_serves_stats_metrics_and_health() -> None:
    async with running_service(EchoService, EchoConfig(listen=LOOPBACK)) as svc:
        admin = AdminServer(svc, LOOPBACK)
        await admin.start()
        try:
            reader, writer = await asyncio.open_connection(*svc.tcp_listeners[0].address)
            writer.write(b"x\n")
            assert await reader.readline() == b"test-host x\n"
            base = f"http://{admin.address}"
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/stats") as resp:
                    body = await resp.json()
                    assert body["service"] == "echo" and body["stats"]["lines"] == 1
                async with http.get(base + "/metrics") as resp:
                    assert "hastack_echo_lines 1" in await resp.text()
                    assert resp.headers["Content-Type"].startswith("text/plain")
                async with http.get(base + "/health") as resp:
                    assert resp.status == 200
                    assert json.loads(await resp.text())["status"] == "ok"
            writer.close()
        finally:
            await admin.stop()
