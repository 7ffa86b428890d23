"""CacheService in-process on loopback: backpressure, connection limit, stats, expiry."""

from __future__ import annotations

import asyncio
import gc

from hastack.cache.config import CacheConfig
from hastack.cache.server import CacheService
from hastack.config import Address
from hastack.testing import running_service


def config(**kw: object) -> CacheConfig:
    return CacheConfig(listen=Address("127.0.0.1", 0), **kw)  # type: ignore[arg-type]


async def roundtrip(port: int, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = await asyncio.wait_for(reader.readuntil(until), 30)
    writer.close()
    return out


async def test_slow_reader_keeps_server_memory_bounded() -> None:
    cfg = config(max_write_buffer_bytes=64 * 1024)
    async with running_service(CacheService, cfg) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        await roundtrip(port, b"set big 0 0 10000\r\n" + b"x" * 10000 + b"\r\n", b"STORED\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # 20,000 pipelined gets would produce ~200 MB of replies; we never read them.
        request = b"get big\r\n" * 20000
        writer.write(request)
        await asyncio.sleep(0)  # let the writes flow; then check for a bounded backlog

        def backlog() -> int:
            conns = list(svc.conns)
            assert len(conns) == 1
            t = conns[0].transport
            assert t is not None
            return t.get_write_buffer_size() + conns[0]._codec.buffered

        deadline = asyncio.get_running_loop().time() + 30
        while not next(iter(svc.conns))._paused:
            assert asyncio.get_running_loop().time() < deadline, "server never paused"
            await asyncio.sleep(0.01)
        # paused: unsent replies are bounded by the high-water mark + one reply batch
        assert backlog() < 64 * 1024 + 300 * 1024 + len(request)
        # now read everything: every get is answered, in order, then the server is idle
        total = 0
        expected = 20000 * len(b"VALUE big 0 10000\r\n" + b"x" * 10000 + b"\r\nEND\r\n")
        while total < expected:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
            assert chunk
            total += len(chunk)
        assert total == expected
        writer.close()


async def test_connection_limit_rejects_with_memcached_message() -> None:
    async with running_service(CacheService, config(max_connections=2)) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for r, w in held:
            w.write(b"version\r\n")
            assert await asyncio.wait_for(r.readline(), 10) == b"VERSION 1.6.18\r\n"
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r3.read(), 10) == b"ERROR Too many open connections\r\n"
        w3.close()
        held[0][1].write(b"stats\r\n")
        stats = await asyncio.wait_for(held[0][0].readuntil(b"END\r\n"), 10)
        assert b"STAT rejected_connections 1\r\n" in stats
        assert b"STAT curr_connections 2\r\n" in stats
        assert b"STAT max_connections 2\r\n" in stats
        for _, w in held:
            w.close()


async def test_garbage_never_kills_the_server() -> None:
    async with running_service(CacheService, config()) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        for junk in (bytes(range(256)) * 20, b"\x00\xff" * 5000, b"GET / HTTP/1.1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(junk)
            writer.write_eof()
            replies = await asyncio.wait_for(reader.read(), 10)  # closes after answering
            assert b"ERROR" in replies or replies == b""
            writer.close()
        assert await roundtrip(port, b"version\r\n", b"\r\n") == b"VERSION 1.6.18\r\n"


async def test_quit_and_admin_stats() -> None:
    async with running_service(CacheService, config()) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"set a 0 0 1\r\nx\r\nget a\r\nquit\r\nget a\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == (
            b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
        )
        writer.close()
        snap = svc.stats.snapshot()
        assert snap["get_hits"] == 1 and snap["curr_items"] == 1 and snap["cmd_set"] == 1
        assert "hastack_cache_get_hits 1" in svc.stats.prometheus()
        gc.collect()


async def test_expiry_crawler_reclaims_memory() -> None:
    async with running_service(CacheService, config(expiry_interval=0.1)) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        await roundtrip(port, b"set gone 0 -1 1\r\nx\r\nset kept 0 0 1\r\nx\r\n", b"STORED\r\n"
                        b"STORED\r\n")
        deadline = asyncio.get_running_loop().time() + 30
        while b"gone" in svc.state.items:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert list(svc.state.items) == [b"kept"]
        assert svc.state.crawler_reclaimed == 1


async def test_idle_timeout_and_stats_conns() -> None:
    async with running_service(CacheService, config(idle_timeout=1.0)) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"stats conns\r\n")
        conns = await asyncio.wait_for(reader.readuntil(b"END\r\n"), 10)
        assert b":state conn_listening\r\n" in conns
        assert b":addr tcp:127.0.0.1:" in conns and b":secs_since_last_cmd " in conns
        # then stay silent: the server closes the idle connection (memcached -o idle_timeout)
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()


async def test_memcached_switches_and_settings() -> None:
    cfg = config(evictions=False, flush_enabled=False, max_memory_bytes=1024 * 1024)
    async with running_service(CacheService, cfg) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        value = b"x" * 100_000
        replies = []
        for i in range(12):  # 1.2 MB into 1 MiB without evictions (-M)
            writer.write(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
            replies.append(await asyncio.wait_for(reader.readline(), 10))
        assert replies[0] == b"STORED\r\n"
        assert replies[-1] == b"SERVER_ERROR out of memory storing object\r\n"
        writer.write(b"flush_all\r\nverbosity 1\r\ncache_memlimit 16\r\nstats settings\r\n")
        assert await asyncio.wait_for(reader.readline(), 10) == (
            b"CLIENT_ERROR flush_all not allowed\r\n"
        )
        settings = await asyncio.wait_for(reader.readuntil(b"END\r\n"), 10)
        assert settings.startswith(b"OK\r\nOK\r\nSTAT maxbytes 16777216\r\n")
        assert b"STAT verbosity 1\r\n" in settings and b"STAT evictions off\r\n" in settings
        assert b"STAT flush_enabled no\r\n" in settings
        writer.write(b"stats\r\n")
        stats = await asyncio.wait_for(reader.readuntil(b"END\r\n"), 10)
        assert b"STAT store_no_memory 2\r\n" in stats and b"STAT curr_items 10\r\n" in stats
        writer.close()


async def test_half_close_while_paused_still_answers_everything() -> None:
    cfg = config(max_write_buffer_bytes=16 * 1024)
    async with running_service(CacheService, cfg) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        await roundtrip(port, b"set v 0 0 5000\r\n" + b"y" * 5000 + b"\r\n", b"STORED\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"get v\r\n" * 2000)
        writer.write_eof()
        total = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 30):
            total += len(chunk)
        assert total == 2000 * len(b"VALUE v 0 5000\r\n" + b"y" * 5000 + b"\r\nEND\r\n")
        writer.close()


async def test_admin_routes_serve_the_curve_and_hot_keys() -> None:
    import aiohttp

    from hastack.core.admin import AdminServer

    async with running_service(CacheService, config(mrc_sample_rate=1.0)) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        requests = b"".join(b"get hot\r\nget k%d\r\n" % i for i in range(200))
        await roundtrip(port, b"set hot 0 0 1\r\nx\r\n" + requests + b"mn\r\n", b"MN\r\n")
        admin = AdminServer(svc, Address("127.0.0.1", 0))
        await admin.start()
        try:
            assert admin.address is not None
            base = f"http://{admin.address.host}:{admin.address.port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/mrc") as resp:
                    mrc = await resp.json()
                async with http.get(base + "/hotkeys?n=3") as resp:
                    hot = await resp.json()
        finally:
            await admin.stop()
        assert mrc["accesses"] == 400 and mrc["points"]
        assert hot[0]["key"] == "hot"


async def test_metadump_streams_under_backpressure() -> None:
    async with running_service(CacheService, config(max_write_buffer_bytes=16 * 1024)) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        fill = b"".join(b"set key:%05d 0 0 10 noreply\r\n0123456789\r\n" % i for i in range(20000))
        await roundtrip(port, fill + b"mn\r\n", b"MN\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"lru_crawler metadump all\r\nget key:00007\r\n")
        received = b""
        while not received.endswith(b"VALUE key:00007 0 10\r\n0123456789\r\nEND\r\n"):
            chunk = await asyncio.wait_for(reader.read(4096), 30)  # a slow reader
            assert chunk
            received += chunk
        dump = received.split(b"END\r\n", 1)[0]
        lines = dump.splitlines()
        assert len(lines) == 20000 and lines[0].startswith(b"key=key%3A00000 exp=-1 ")
        # a metadump after other commands of the same read is refused, as memcached does
        writer.write(b"get nope\r\nlru_crawler metadump all\r\n")
        reply = await asyncio.wait_for(reader.readuntil(b"metadump\r\n"), 10)
        assert reply == b"END\r\nERROR cannot pipeline other commands before metadump\r\n"
        writer.close()


class StuckTransport(asyncio.Transport):
    """A transport whose peer never reads: over ``limit`` bytes it pauses the protocol."""

    def __init__(self, protocol: asyncio.Protocol, limit: int = 8192) -> None:
        super().__init__()
        self.protocol = protocol
        self.limit = limit
        self.sent: list[bytes] = []
        self.size = 0
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.sent.append(bytes(data))
        self.size += len(data)
        if self.size > self.limit and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self) -> None:
        self.size = 0
        self.paused = False
        self.protocol.resume_writing()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_one_metadump_at_a_time() -> None:
    from hastack.cache.server import CacheProtocol

    async with running_service(CacheService, config()) as svc:
        assert svc.listener is not None
        port = svc.listener.address.port
        fill = b"".join(b"set key:%05d 0 0 1 noreply\r\nx\r\n" % i for i in range(5000))
        await roundtrip(port, fill + b"mn\r\n", b"MN\r\n")
        first = CacheProtocol(svc)
        stuck = StuckTransport(first)
        first.connection_made(stuck)
        first.data_received(b"lru_crawler metadump all\r\n")
        assert stuck.paused and svc.dumping is first  # mid-dump, waiting for its reader
        second = CacheProtocol(svc)
        other = StuckTransport(second, limit=1 << 30)
        second.connection_made(other)
        second.data_received(b"lru_crawler metadump all\r\n")
        assert other.sent == [b"BUSY currently processing crawler request\r\n"]
        while stuck.paused:  # the first reader catches up: the dump completes
            stuck.drain()
        assert b"".join(stuck.sent).endswith(b"END\r\n") and svc.dumping is None
        assert b"".join(stuck.sent).count(b"\n") == 5001
        second.data_received(b"lru_crawler metadump all\r\n")
        assert b"".join(other.sent).endswith(b"END\r\n")
        # a client that disconnects mid-dump frees the crawler too
        third = CacheProtocol(svc)
        gone = StuckTransport(third)
        third.connection_made(gone)
        third.data_received(b"lru_crawler metadump all\r\n")
        assert svc.dumping is third
        third.connection_lost(None)
        assert svc.dumping is None
        for proto_ in (first, second):
            proto_.connection_lost(None)
