"""A pool of backends at run time: pick per request, slots and a bounded queue, connections.

``BackendPool.acquire()`` returns a backend with a free slot (per-backend max connections), or
waits in a bounded FIFO queue; it raises :class:`PoolUnavailable` (answered as 503, never a
silent close) when no backend is up, the queue is full, or the wait exceeds ``queue_timeout``.
Idle keep-alive connections are reused per backend; connections waiting for a response head are
tracked so that a backend marked down can have them aborted (their idempotent requests are then
retried elsewhere instead of hanging).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from hastack.config import Address
from hastack.proxy.config import BackendConfig, PoolConfig
from hastack.proxy.http import IdleConnections, UpstreamConnection, open_upstream
from hastack.proxy.state import BackendState, PoolState


class PoolUnavailable(Exception):
    """No backend can take the request; ``reason`` goes into the 503 body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendPool:
    def __init__(self, name: str, config: PoolConfig) -> None:
        self.name = name
        self.config = config
        self.state = PoolState(config.balance, config.health.slow_start_interval)
        self.addresses: dict[str, Address] = {}
        self.idle = IdleConnections(config.max_idle_per_backend, config.idle_timeout)
        self.waiting: dict[str, set[UpstreamConnection]] = {}
        self._queue: deque[asyncio.Future[None]] = deque()
        self.queue_overflows = 0
        self.queue_timeouts = 0
        self.no_backend = 0
        for b in config.backends:
            self.add_backend(b)

    # -- membership (config and admin commands) ---------------------------------------------

    def add_backend(self, b: BackendConfig, now: float | None = None) -> BackendState:
        key = str(b.address)
        existing = self.state.get(key)
        if existing is not None:
            existing.weight = b.weight
            existing.max_connections = b.max_connections or self.config.max_connections_per_backend
            existing.draining = False
            return existing
        st = BackendState(
            key, b.weight, b.max_connections or self.config.max_connections_per_backend
        )
        if now is not None:
            st.up_since = now  # added at run time: slow start
        self.state.add(st)
        self.addresses[key] = b.address
        self._wake_all()
        return st

    def remove_backend(self, key: str) -> bool:
        st = self.state.remove(key)
        self.idle.drop(key)
        self.addresses.pop(key, None)
        self._wake_all()
        return st is not None

    # -- slots --------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    def try_acquire(self, exclude: list[str], affinity: str | None = None) -> BackendState | None:
        """The non-waiting fast path of acquire(): a backend with a free slot, or None."""
        if self._queue:
            return None  # others are waiting: queue behind them (FIFO)
        b = self.state.pick(time.monotonic(), exclude, affinity)
        if b is not None:
            b.active += 1
        return b

    async def acquire(
        self, exclude: tuple[str, ...] = (), affinity: str | None = None
    ) -> BackendState:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.queue_timeout
        front = False
        while True:
            now = time.monotonic()
            b = self.state.pick(now, exclude, affinity)
            if b is not None:
                b.active += 1
                return b
            if not self.state.any_available(now, exclude):
                self.no_backend += 1
                raise PoolUnavailable("no backend available")
            if not front and len(self._queue) >= self.config.max_queue:
                self.queue_overflows += 1
                raise PoolUnavailable("backend queue full")
            fut = loop.create_future()
            if front:
                self._queue.appendleft(fut)
            else:
                self._queue.append(fut)
            remaining = deadline - loop.time()
            handle = loop.call_later(max(remaining, 0.0), _expire, fut)
            try:
                await fut
            except TimeoutError:
                self.queue_timeouts += 1
                raise PoolUnavailable("timed out waiting for a backend") from None
            finally:
                handle.cancel()
                try:
                    self._queue.remove(fut)
                except ValueError:
                    pass  # already handed a slot
            front = True  # keep our place if someone else grabbed the slot first

    def release(self, b: BackendState) -> None:
        b.active -= 1
        q = self._queue
        while q:
            fut = q.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def _wake_all(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)

    def state_changed(self) -> None:
        """A backend went up or down: queued requests re-evaluate now."""
        self._wake_all()

    # -- connections --------------------------------------------------------------------------

    async def connection(self, b: BackendState, high_water: int) -> UpstreamConnection:
        conn = self.idle.get(b.key, time.monotonic())
        if conn is not None:
            return conn
        addr = self.addresses[b.key]
        return await open_upstream(
            addr.host, addr.port, b.key, self.config.connect_timeout, high_water
        )

    def put_back(self, conn: UpstreamConnection) -> None:
        if conn.key in self.addresses:
            self.idle.put(conn, time.monotonic())
        else:
            conn.close()

    def oldest_wait(self, key: str, now: float) -> float:
        """Seconds the longest-waiting request to ``key`` has waited for its response head."""
        conns = self.waiting.get(key)
        if not conns:
            return 0.0
        return now - min(c.sent_at for c in conns)

    def abort_waiting(self, key: str) -> int:
        """The backend was marked down: abort requests still waiting for its response head."""
        conns = self.waiting.pop(key, set())
        for c in conns:
            if c.transport is not None:
                c.transport.abort()
        self.idle.drop(key)
        return len(conns)

    def snapshot(self, now: float) -> dict[str, object]:
        backends = []
        for b in self.state.backends:
            backends.append(
                {
                    "address": b.key,
                    "state": b.state_name(now),
                    "weight": b.weight,
                    "effective_weight": round(
                        b.effective_weight(now, self.state.slow_start), 3
                    ),
                    "active": b.active,
                    "max_connections": b.max_connections,
                    "idle_connections": self.idle.count(b.key),
                    "requests": b.requests,
                    "failures": b.failures,
                    "responses": dict(b.responses),
                    "latency_avg_ms": round(1000 * b.latency_sum / b.requests, 3)
                    if b.requests
                    else 0.0,
                    "latency_max_ms": round(1000 * b.latency_max, 3),
                    "affinity_id": b.cid,
                }
            )
        return {
            "balance": self.state.balance,
            "queued": self.queued,
            "queue_overflows": self.queue_overflows,
            "queue_timeouts": self.queue_timeouts,
            "no_backend": self.no_backend,
            "backends": backends,
        }

    def close(self) -> None:
        self.idle.close_all()
        self._wake_all()


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
