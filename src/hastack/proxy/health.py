"""Active HTTP health checks (HAProxy style: interval, timeout, rise, fall).

One loop per pool checks every backend concurrently each ``check_interval`` with a fresh
connection (``GET path``, ``Connection: close``); any status below 500 within ``check_timeout`` is
good (an app that answers, even with 404, is alive; one that answers 5xx is not).
A backend marked down has the requests still waiting for its response head aborted, so their
idempotent requests are retried on another backend at once instead of waiting for the
response timeout: a hung backend costs at most one retry. A failed check while requests have
waited longer than ``check_timeout`` for that backend marks it down at once ("sudden death"),
so a hung backend is detected within about two check periods instead of ``fall`` of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from hastack.errors import ProtocolError
from hastack.proxy.http import open_upstream
from hastack.proxy.proto import Response

if TYPE_CHECKING:
    from hastack.proxy.pool import BackendPool
    from hastack.proxy.server import ProxyService
    from hastack.proxy.state import BackendState


async def check_once(host: str, port: int, path: str, host_header: str, timeout: float) -> bool:
    """One HTTP check; True when the backend answered 2xx/3xx within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            conn = await open_upstream(host, port, f"{host}:{port}", timeout)
            try:
                conn.parser.expect_response(b"GET")
                conn.write(
                    b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                    b"User-Agent: hastack-health\r\n\r\n" % (path.encode(), host_header.encode())
                )
                while True:
                    ev = await conn.next_event()
                    if isinstance(ev, Response):
                        if ev.status < 200:
                            continue
                        return ev.status < 500  # an app that answers, even 404, is alive
                    return False
            finally:
                conn.abort()
    except (OSError, TimeoutError, ProtocolError):
        return False


class HealthChecker:
    def __init__(self, service: ProxyService) -> None:
        self.service = service
        self._tasks: list[asyncio.Task[None]] = []
        self.checks = service.stats.counter("health_checks", help="active checks run")
        self.transitions = service.stats.counter(
            "health_transitions", help="backends marked up or down by checks"
        )

    def start(self) -> None:
        for pool in self.service.pools.values():
            if pool.config.health.enabled:
                self._tasks.append(self.service.spawn(self._run(pool), name=f"health {pool.name}"))

    def restart(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        self.start()

    async def _run(self, pool: BackendPool) -> None:
        while True:
            hc = pool.config.health
            backends = list(pool.state.backends)
            if backends:
                await asyncio.gather(*(self._check(pool, b) for b in backends))
            await asyncio.sleep(hc.check_interval)

    async def _check(self, pool: BackendPool, b: BackendState) -> None:
        hc = pool.config.health
        addr = pool.addresses.get(b.key)
        if addr is None:
            return
        ok = await check_once(addr.host, addr.port, hc.path, hc.host or b.key, hc.check_timeout)
        self.checks.value += 1
        now = time.monotonic()
        if not ok and b.up and pool.oldest_wait(b.key, now) > hc.check_timeout:
            # Sudden death: the check failed *and* requests have waited longer than a check
            # may take. The backend is hung (SIGSTOP, deadlock): do not wait for `fall` more
            # checks while clients stall.
            b.bad = hc.fall - 1
        if b.check_result(ok, now, hc.rise, hc.fall):
            self.transitions.value += 1
            if b.up:
                self.service.log.warning("pool %s: backend %s is up", pool.name, b.key)
            else:
                n = pool.abort_waiting(b.key)
                self.service.log.warning(
                    "pool %s: backend %s is down (%d waiting requests moved)", pool.name, b.key, n
                )
            pool.state_changed()
