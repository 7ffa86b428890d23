"""The asyncio side of the codec: one Protocol class for clients, backends and storage nodes.

``HTTPProtocol`` owns an :class:`~hastack.proxy.proto.HTTPConnection` and turns its events into
awaitables without a StreamReader: ``data_received`` feeds the parser and wakes one waiter.
Flow control both ways: reading pauses while more than ``high_water`` unparsed bytes wait
(resumed when the consumer asks for more), and ``drain()`` waits while the transport's write
buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.utils import formatdate

from hastack.core.net import ConnectionProtocol
from hastack.proxy.proto import NEED_DATA, Event, HTTPConnection


class HTTPProtocol(ConnectionProtocol):
    """An HTTP connection seen as a stream of events (server or client role)."""

    def __init__(self, parser: HTTPConnection, high_water: int = 256 * 1024) -> None:
        self.parser = parser
        self.high_water = high_water
        self.loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.eof = False
        self.writes = 0  # write() calls so far: tells whether a response has started
        self.peer: tuple[str, int] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.receive_data(data)
        if not self._read_paused and len(parser.buf) > self.high_water:
            self._read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self.parser.receive_data(b"")
        self._wake()
        return True  # keep the write side open: a half-closed client still gets its answer

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.parser.receive_data(b"")
        self._wake()
        d = self._drain_waiter
        if d is not None:
            self._drain_waiter = None
            if not d.done():
                d.set_exception(ConnectionResetError("connection lost"))
                d.exception()  # mark retrieved; the awaiting code sees it anyway

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        d = self._drain_waiter
        if d is not None:
            self._drain_waiter = None
            if not d.done():
                d.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    # -- for the request handlers -----------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next parsed event; waits for bytes at most ``timeout`` seconds (TimeoutError)."""
        parser = self.parser
        while True:
            ev = parser.next_event()
            if ev is not NEED_DATA:
                if self._read_paused and len(parser.buf) <= self.high_water // 2:
                    self._resume_reading()
                return ev  # type: ignore[return-value]
            if self._read_paused:
                self._resume_reading()
            await self.wait_data(timeout)

    async def wait_data(self, timeout: float | None) -> None:
        """Wait until bytes (or EOF) arrive; TimeoutError after ``timeout`` seconds.

        Timeouts use one lazily re-armed timer per connection instead of a timer per wait:
        a wait only records its deadline; the timer, when it fires, re-arms itself if the
        deadline moved. On a busy keep-alive connection that is one timer per timeout period,
        not one per request.
        """
        loop = self.loop
        fut = loop.create_future()
        self._waiter = fut
        if timeout is not None:
            deadline = self._deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:
                # none armed, or armed for a later, longer timeout: arm for this one
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._on_timer)
        try:
            await fut
        finally:
            self._deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.closed:
            return
        now = self.loop.time()
        if now < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_exception(TimeoutError())

    def _resume_reading(self) -> None:
        self._read_paused = False
        if self.transport is not None and not self.closed:
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.writes += 1
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the peer has taken enough of what we wrote (TimeoutError after timeout)."""
        if self.closed:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        fut = self.loop.create_future()
        self._drain_waiter = fut
        if timeout is None:
            await fut
        else:
            handle = self.loop.call_later(timeout, _expire, fut)
            try:
                await fut
            finally:
                handle.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class UpstreamConnection(HTTPProtocol):
    """A connection to a backend or storage node (client role), poolable when keep-alive."""

    def __init__(self, key: str, high_water: int = 256 * 1024, max_body_bytes: int = 1 << 62):
        super().__init__(HTTPConnection("client", max_body_bytes=max_body_bytes), high_water)
        self.key = key
        self.idle_since = 0.0
        self.sent_at = 0.0  # time.monotonic() when the request in flight was sent
        self.uses = 0

    def eof_received(self) -> bool:
        super().eof_received()
        return False  # nothing more to send to a backend that closed: let asyncio close it

    def reusable(self) -> bool:
        return (
            not self.closed
            and not self.eof
            and self.parser.keep_alive
            and not self.parser.in_body
            and self.parser.buffered == 0
        )


async def open_upstream(
    host: str, port: int, key: str, timeout: float, high_water: int = 256 * 1024
) -> UpstreamConnection:
    """Connect (raises OSError or TimeoutError)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, proto = await loop.create_connection(
            lambda: UpstreamConnection(key, high_water), host, port
        )
    return proto


class IdleConnections:
    """Idle keep-alive connections per ``host:port`` (LIFO: the warmest first)."""

    def __init__(self, max_idle: int, idle_timeout: float) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[str, list[UpstreamConnection]] = {}

    def get(self, key: str, now: float) -> UpstreamConnection | None:
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            if conn.closed or conn.eof or conn.parser.buffered:
                conn.close()
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.close()
                continue
            return conn
        return None

    def put(self, conn: UpstreamConnection, now: float) -> None:
        if not conn.reusable():
            conn.close()
            return
        stack = self._idle.setdefault(conn.key, [])
        if len(stack) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        conn.uses += 1
        stack.append(conn)

    def sweep(self, now: float) -> None:
        for stack in self._idle.values():
            keep = [c for c in stack if not c.closed and now - c.idle_since <= self.idle_timeout]
            for c in stack:
                if c not in keep:
                    c.close()
            stack[:] = keep

    def drop(self, key: str) -> None:
        for c in self._idle.pop(key, []):
            c.close()

    def close_all(self) -> None:
        for key in list(self._idle):
            self.drop(key)

    def count(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(s) for s in self._idle.values())


class HttpDate:
    """RFC 7231 Date header value, formatted once per second."""

    def __init__(self) -> None:
        self._sec = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = time.time()
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._value = formatdate(sec, usegmt=True).encode()
        return self._value
