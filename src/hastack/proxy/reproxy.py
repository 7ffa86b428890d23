"""Perlbal reproxy: X-REPROXY-URL lists, X-REPROXY-FILE, X-REPROXY-CACHE-FOR.

Semantics follow Perlbal 1.80 (shared/reference/perlbal.md section 2) with its measured weak
spots fixed: every URL has a connect timeout and a first-byte timeout, and a storage host that
failed is remembered for ``reproxy_dead_interval`` seconds and tried last, so the next request
does not pay for it again.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from hastack.errors import ProtocolError
from hastack.proxy.http import IdleConnections, UpstreamConnection, open_upstream
from hastack.proxy.proto import ConnectionClosed, Data, EndOfMessage, Response

# Perlbal: http://IPv4[:port][/path]; anything else in the list is skipped silently.
_URL = re.compile(rb"^http://(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?(/\S*)?$")

# Headers never passed from the app's reproxy answer to the client.
DROP_APP_HEADERS = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"x-reproxy-url",
        b"x-reproxy-file",
        b"x-reproxy-expected-size",
        b"x-reproxy-cache-for",
        b"x-accel-redirect",
    }
)


def parse_urls(value: bytes) -> list[tuple[str, int, bytes]]:
    out = []
    for item in value.split():
        m = _URL.match(item)
        if m is None:
            continue
        host = m.group(1).decode()
        if any(int(p) > 255 for p in host.split(".")):
            continue
        port = int(m.group(2)) if m.group(2) else 80
        if not 0 < port < 65536:
            continue
        out.append((host, port, m.group(3) or b"/"))
    return out


class StorageFailure(Exception):
    """This URL did not work; try the next one."""


@dataclass
class CacheEntry:
    expires: float
    urls: bytes
    headers: list[tuple[bytes, bytes]]
    last_modified: bytes | None
    expected_size: int | None


class ReproxyCache:
    """X-REPROXY-CACHE-FOR: the URL list and named app headers per ``Host|URI`` (LRU)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._d: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, now: float) -> CacheEntry | None:
        e = self._d.get(key)
        if e is None:
            return None
        if now >= e.expires:
            del self._d[key]
            return None
        self._d.move_to_end(key)
        return e

    def put(self, key: bytes, entry: CacheEntry) -> None:
        if self.max_entries <= 0:
            return
        self._d[key] = entry
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def parse_cache_for(
    value: bytes, app_headers: list[tuple[bytes, bytes]]
) -> tuple[float, list[tuple[bytes, bytes]]] | None:
    """``<secs>; Hdr1 Hdr2`` -> (seconds, [(name, value) of those app headers])."""
    secs_s, _, names_s = value.partition(b";")
    try:
        secs = float(secs_s.strip())
    except ValueError:
        return None
    if secs <= 0:
        return None
    wanted = {n.lower() for n in names_s.split()}
    kept = [(k, v) for k, v in app_headers if k.lower() in wanted]
    return secs, kept


class DeadHosts:
    """Short memory of storage hosts that failed (connect error or timeout).

    When the memory expires, exactly one request probes the host again (the entry is extended
    by ``probe_window`` for everyone else), so a still-hung host costs one request per interval,
    not every request that happens to arrive then.
    """

    def __init__(self, interval: float, probe_window: float = 5.0) -> None:
        self.interval = interval
        self.probe_window = probe_window
        self._until: dict[str, float] = {}

    def mark(self, key: str, now: float) -> None:
        if self.interval > 0:
            if len(self._until) >= 10000:  # bounded: forget everything rather than grow
                self._until.clear()
            self._until[key] = now + self.interval

    def is_dead(self, key: str, now: float) -> bool:
        t = self._until.get(key)
        if t is None:
            return False
        if now >= t:
            self._until[key] = now + self.probe_window  # this caller probes; others wait
            return False
        return True

    def alive(self, key: str) -> None:
        self._until.pop(key, None)

    def remembered(self) -> int:
        return len(self._until)

    def order(
        self, urls: list[tuple[str, int, bytes]], now: float
    ) -> list[tuple[str, int, bytes]]:
        if not self._until:
            return urls
        alive: list[tuple[str, int, bytes]] = []
        dead: list[tuple[str, int, bytes]] = []
        for u in urls:
            (dead if self.is_dead(f"{u[0]}:{u[1]}", now) else alive).append(u)
        return alive + dead if dead else urls


class StorageClient:
    """Fetches one reproxy URL list entry: pooled keep-alive connections per storage host."""

    def __init__(
        self,
        connect_timeout: float,
        response_timeout: float,
        dead_interval: float,
        max_idle: int,
        idle_timeout: float,
        high_water: int,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.idle = IdleConnections(max_idle, idle_timeout)
        self.dead = DeadHosts(dead_interval, connect_timeout + response_timeout)
        # URLs that answered 404/410 recently are tried after the others (same expiry).
        self.missing = DeadHosts(dead_interval, connect_timeout + response_timeout)
        self.high_water = high_water
        self.attempts = 0
        self.failures = 0
        self.fallthroughs = 0
        self._parsed: dict[bytes, list[tuple[str, int, bytes]]] = {}

    def parse_urls(self, value: bytes) -> list[tuple[str, int, bytes]]:
        """parse_urls() with a small memo: apps answer the same list for the same file."""
        urls = self._parsed.get(value)
        if urls is None:
            if len(self._parsed) >= 4096:
                self._parsed.clear()
            urls = self._parsed[value] = parse_urls(value)
        return urls

    async def fetch(
        self,
        host: str,
        port: int,
        path: bytes,
        method: bytes,
        client_host: bytes | None,
        client_range: bytes | None,
        expected_size: int | None,
    ) -> tuple[UpstreamConnection, Response]:
        """Open (or reuse) a connection, send the request, return its accepted response head.

        Raises StorageFailure to fall through to the next URL.
        """
        key = f"{host}:{port}"
        self.attempts += 1
        now = time.monotonic()
        conn = self.idle.get(key, now)
        if conn is None:
            try:
                conn = await open_upstream(
                    host, port, key, self.connect_timeout, self.high_water
                )
            except (OSError, TimeoutError) as exc:
                self.failures += 1
                self.dead.mark(key, now)
                raise StorageFailure(f"connect {key}: {exc!r}") from None
        head = b"%s %s HTTP/1.0\r\nConnection: keep-alive\r\n" % (method, path)
        if client_host is not None:
            head += b"Host: " + client_host + b"\r\n"
        if client_range is not None:
            head += b"Range: " + client_range + b"\r\n"
        conn.parser.expect_response(method)
        conn.write(head + b"\r\n")
        try:
            while True:
                ev = await conn.next_event(self.response_timeout)
                if isinstance(ev, Response):
                    if ev.status >= 200:
                        break
                    continue
                raise StorageFailure(f"{key}: closed before answering")
        except TimeoutError:
            conn.abort()
            self.failures += 1
            self.dead.mark(key, time.monotonic())
            raise StorageFailure(f"{key}: no response within {self.response_timeout}s") from None
        except (ProtocolError, ConnectionError, StorageFailure) as exc:
            conn.abort()
            self.failures += 1
            raise StorageFailure(f"{key}: {exc}") from None
        status = ev.status
        if not (200 <= status < 300 or status == 416):
            if status == 404 or status == 410:
                self.missing.mark(f"{key}{path.decode('latin-1')}", time.monotonic())
            # Perlbal closes the connection here (and measured -50 % rps for a 404 first URL);
            # a small, framed error body is read and the connection kept instead.
            if (
                ev.content_length is not None
                and ev.content_length <= 65536
                and await _skip_small_body(conn, self.response_timeout)
            ):
                self.done(conn)
            else:
                conn.close()
            raise StorageFailure(f"{key}: status {status}")
        if expected_size is not None and status != 416 and ev.content_length != expected_size:
            conn.close()
            raise StorageFailure(
                f"{key}: size {ev.content_length} != expected {expected_size}"
            )
        self.dead.alive(key)
        if self.missing.remembered():
            self.missing.alive(f"{key}{path.decode('latin-1')}")
        return conn, ev

    def order(
        self, urls: list[tuple[str, int, bytes]], now: float
    ) -> list[tuple[str, int, bytes]]:
        """The URLs in trying order: recently dead hosts and recently missing files last."""
        urls = self.dead.order(urls, now)
        if not self.missing.remembered():
            return urls
        found: list[tuple[str, int, bytes]] = []
        gone: list[tuple[str, int, bytes]] = []
        for u in urls:
            key = f"{u[0]}:{u[1]}{u[2].decode('latin-1')}"
            (gone if self.missing.is_dead(key, now) else found).append(u)
        return found + gone if gone else urls

    def done(self, conn: UpstreamConnection) -> None:
        self.idle.put(conn, time.monotonic())


async def _skip_small_body(conn: UpstreamConnection, timeout: float) -> bool:
    try:
        return await skip_body(conn, timeout, limit=65536)
    except (ProtocolError, ConnectionError, TimeoutError):
        return False


async def skip_body(conn: UpstreamConnection, timeout: float, limit: int = 1 << 20) -> bool:
    """Read and discard a response body; True if the connection is reusable afterwards."""
    seen = 0
    while True:
        ev = await conn.next_event(timeout)
        if isinstance(ev, Data):
            seen += len(ev.data)
            if seen > limit:
                return False
        elif isinstance(ev, EndOfMessage):
            return conn.reusable()
        elif isinstance(ev, ConnectionClosed):
            return False
