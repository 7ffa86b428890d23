"""Asyncio memcached client for the app tier: ketama consistent hashing, pooling, failover.

Key -> server mapping is libmemcached's weighted ketama (``MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED``,
what pylibmc calls ``ketama_weighted``, the last.fm libketama scheme): every live server gets
``floor(weight / total * 40 * live_servers) * 4`` points (160 with equal weights); point group
``i`` of a server is the MD5 of ``"host:port-i"`` (``"host-i"`` when the port is 11211), split into
four little-endian 32-bit values; a key's hash is the first little-endian word of its MD5 and it
goes to the first point at or after it (wrapping). libmemcached computes the share in single
precision float; so do we, so that mixed clients agree on every key.

Failover mirrors libmemcached's auto-eject: after ``failure_limit`` consecutive failures a server
leaves the continuum (its keys move to the others) for ``retry_interval`` seconds, then is tried
again.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hastack.cache.proto import Line, ReplyParser, Value, encode_store
from hastack.config import Address
from hastack.errors import HastackError, ProtocolError

POINTS_PER_SERVER_KETAMA = 160  # MEMCACHED_POINTS_PER_SERVER_KETAMA
DEFAULT_PORT = 11211  # MEMCACHED_DEFAULT_PORT: left out of the point names


def _f32(x: float) -> float:
    """Round to IEEE single precision, as C's float arithmetic does after each operation."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def key_hash(key: bytes) -> int:
    """libhashkit's MD5 hash: the digest's first four bytes, little-endian."""
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


@dataclass
class Server:
    host: str
    port: int
    weight: int = 1
    failures: int = 0
    next_retry: float = 0.0  # monotonic time before which the server is ejected

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class Ketama:
    """The continuum. ``servers`` keep their order (it decides ties, as in libmemcached)."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)
        self._values: list[int] = []
        self._index: list[int] = []
        self.rebuild(set(range(len(self.servers))))

    def rebuild(self, live: set[int]) -> None:
        points: list[tuple[int, int]] = []
        total_weight = sum(self.servers[i].weight for i in live)
        n_live = len(live)
        for i, srv in enumerate(self.servers):
            if i not in live:
                continue
            pct = _f32(_f32(srv.weight) / _f32(total_weight))
            share = _f32(_f32(_f32(pct * POINTS_PER_SERVER_KETAMA) / 4) * _f32(n_live))
            per_server = int(_f32(share + 0.0000000001) // 1) * 4
            for group in range(per_server // 4):
                if srv.port == DEFAULT_PORT:
                    label = f"{srv.host}-{group}"
                else:
                    label = f"{srv.host}:{srv.port}-{group}"
                digest = hashlib.md5(label.encode()).digest()
                for x in range(4):
                    points.append((int.from_bytes(digest[4 * x : 4 * x + 4], "little"), i))
        points.sort()  # libmemcached: qsort by value (ties: unspecified, practically never)
        self._values = [v for v, _ in points]
        self._index = [i for _, i in points]

    def server_index(self, key: bytes) -> int:
        if not self._values:
            raise LookupError("no live servers")
        pos = bisect.bisect_left(self._values, key_hash(key))
        if pos == len(self._values):
            pos = 0
        return self._index[pos]

    @property
    def points(self) -> int:
        return len(self._values)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ReplyParser()

    async def next_event(self) -> Value | Line:
        while True:
            ev = self.parser.next_event()
            if ev is not None:
                if not isinstance(ev, Value | Line):
                    raise ProtocolError(f"unexpected meta reply {ev!r}", fatal=True)
                return ev
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.parser.receive_data(data)

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Pool:
    """At most ``size`` connections to one server: a semaphore slot per connection in use,
    idle connections kept for reuse. Releasing is synchronous, so a cancelled request can
    never leak a slot."""

    server: Server
    size: int
    idle: list[_Conn] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None

    def semaphore(self) -> asyncio.Semaphore:
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.size)
        return self.slots


class ServerDown(ConnectionError):
    """The server could not be reached (it is counted towards ejection)."""


class CacheError(HastackError):
    """The server answered ERROR / CLIENT_ERROR / SERVER_ERROR."""


class CacheClient:
    """Consistent-hashing client over several memcached-protocol servers.

    ``servers``: ``"host:port"``, ``Address`` or ``(host, port, weight)``.
    ``pool_size``: connections per server. ``timeout``: per request (connect included).
    ``failure_limit`` consecutive failures eject a server for ``retry_interval`` seconds
    (libmemcached: server_failure_limit, retry_timeout).
    """

    def __init__(
        self,
        servers: Iterable[str | Address | tuple[str, int, int]],
        *,
        pool_size: int = 4,
        timeout: float = 2.0,
        failure_limit: int = 2,
        retry_interval: float = 30.0,
        max_keys_per_get: int = 100,
    ) -> None:
        parsed: list[Server] = []
        for s in servers:
            if isinstance(s, str):
                a = Address.parse(s)
                parsed.append(Server(a.host, a.port))
            elif isinstance(s, Address):
                parsed.append(Server(s.host, s.port))
            else:
                parsed.append(Server(s[0], s[1], s[2]))
        if not parsed:
            raise ValueError("at least one server is needed")
        self.servers = parsed
        self.ketama = Ketama(parsed)
        self._pools = [_Pool(s, pool_size) for s in parsed]
        self.timeout = timeout
        self.failure_limit = failure_limit
        self.retry_interval = retry_interval
        self.max_keys_per_get = max_keys_per_get
        self._live = set(range(len(parsed)))

    # -- routing ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        now = time.monotonic()
        live = {i for i, s in enumerate(self.servers) if s.next_retry <= now}
        if live != self._live:
            self._live = live
            if live:
                self.ketama.rebuild(live)

    def server_for(self, key: bytes) -> Server:
        self._refresh()
        if not self._live:
            raise ServerDown("every server is ejected")
        return self.servers[self.ketama.server_index(key)]

    def _failed(self, idx: int) -> None:
        srv = self.servers[idx]
        srv.failures += 1
        if srv.failures >= self.failure_limit:
            srv.next_retry = time.monotonic() + self.retry_interval
            srv.failures = 0
        pool = self._pools[idx]
        for conn in pool.idle:
            conn.close()
        pool.idle.clear()

    # -- connections -----------------------------------------------------------------------------
    async def _acquire(self, idx: int) -> _Conn:
        pool = self._pools[idx]
        slots = pool.semaphore()
        await slots.acquire()
        if pool.idle:
            return pool.idle.pop()
        try:
            reader, writer = await asyncio.open_connection(pool.server.host, pool.server.port)
        except BaseException:
            slots.release()
            raise
        return _Conn(reader, writer)

    def _release(self, idx: int, conn: _Conn, ok: bool) -> None:
        pool = self._pools[idx]
        if ok:
            pool.idle.append(conn)
        else:
            conn.close()  # its state is unknown (error, timeout, cancellation): never reuse
        pool.semaphore().release()

    async def _call(self, idx: int, request: bytes, lines: int = 1) -> list[Value | Line]:
        """Send ``request``; read replies until ``lines`` Line events (Values collected)."""
        conn: _Conn | None = None
        ok = False
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._acquire(idx)
                conn.writer.write(request)
                out: list[Value | Line] = []
                seen = 0
                while seen < lines:
                    ev = await conn.next_event()
                    out.append(ev)
                    if isinstance(ev, Line):
                        seen += 1
            ok = True
        except (OSError, TimeoutError, ProtocolError) as exc:
            self._failed(idx)
            raise ServerDown(f"{self.servers[idx].name}: {exc or type(exc).__name__}") from exc
        finally:
            if conn is not None:
                self._release(idx, conn, ok)
        self.servers[idx].failures = 0
        return out

    def _index(self, key: bytes) -> int:
        self._refresh()
        if not self._live:
            raise ServerDown("every server is ejected")
        return self.ketama.server_index(key)

    # -- commands --------------------------------------------------------------------------------
    async def get(self, key: bytes) -> bytes | None:
        return (await self.get_many([key])).get(key)

    async def get_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Pipelined multi-get: one ``get k1 k2 ...`` per server (chunked), all concurrently.
        Keys on a server that fails are reported as misses."""
        by_server: dict[int, list[bytes]] = {}
        for key in keys:
            by_server.setdefault(self._index(key), []).append(key)
        jobs = []
        for idx, ks in by_server.items():
            for i in range(0, len(ks), self.max_keys_per_get):
                chunk = ks[i : i + self.max_keys_per_get]
                jobs.append(self._call(idx, b"get " + b" ".join(chunk) + b"\r\n"))
        found: dict[bytes, bytes] = {}
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, ServerDown):
                continue
            if isinstance(result, BaseException):
                raise result
            for ev in result:
                if isinstance(ev, Value):
                    found[ev.key] = ev.data
        return found

    async def _simple(self, key: bytes, request: bytes) -> bytes:
        out = await self._call(self._index(key), request)
        last = out[-1]
        assert isinstance(last, Line)
        if last.line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise CacheError(last.line.decode("latin-1"))
        return last.line

    async def set(self, key: bytes, value: bytes, exptime: int = 0, flags: int = 0) -> bool:
        try:
            return await self._simple(key, encode_store(b"set", key, value, flags, exptime)) == (
                b"STORED"
            )
        except ServerDown:
            return False

    async def set_many(
        self, items: dict[bytes, bytes], exptime: int = 0, flags: int = 0
    ) -> dict[bytes, bool]:
        """Pipelined: all sets for one server in one write, replies read in order."""
        by_server: dict[int, list[bytes]] = {}
        for key in items:
            by_server.setdefault(self._index(key), []).append(key)

        async def one(idx: int, keys: list[bytes]) -> dict[bytes, bool]:
            request = b"".join(encode_store(b"set", k, items[k], flags, exptime) for k in keys)
            try:
                replies = await self._call(idx, request, lines=len(keys))
            except ServerDown:
                return dict.fromkeys(keys, False)
            return {
                k: isinstance(r, Line) and r.line == b"STORED"
                for k, r in zip(keys, replies, strict=True)
            }

        out: dict[bytes, bool] = {}
        for part in await asyncio.gather(*(one(i, ks) for i, ks in by_server.items())):
            out.update(part)
        return out

    async def add(self, key: bytes, value: bytes, exptime: int = 0, flags: int = 0) -> bool:
        reply = await self._simple(key, encode_store(b"add", key, value, flags, exptime))
        return reply == b"STORED"

    async def delete(self, key: bytes) -> bool:
        return await self._simple(key, b"delete " + key + b"\r\n") == b"DELETED"

    async def incr(self, key: bytes, delta: int = 1) -> int | None:
        reply = await self._simple(key, b"incr %s %d\r\n" % (key, delta))
        return None if reply == b"NOT_FOUND" else int(reply)

    async def decr(self, key: bytes, delta: int = 1) -> int | None:
        reply = await self._simple(key, b"decr %s %d\r\n" % (key, delta))
        return None if reply == b"NOT_FOUND" else int(reply)

    async def close(self) -> None:
        for pool in self._pools:
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()
