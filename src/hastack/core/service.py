"""The base every hastack service is built on.

A service is an object built from its config (no module-level state, so one test process can
run three storage nodes). Its life: ``start()`` binds everything and returns when it is ready;
``stop()`` is the one graceful shutdown routine of DESIGN.md principle 5: stop accepting, finish
in-flight work (``drain``), cancel background loops, flush and release (``close``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from ssl import SSLContext
from typing import Any, ClassVar

from aiohttp import web

from hastack.config import Address, HostConfig, ServiceConfig
from hastack.core.net import (
    ConnectionProtocol,
    StreamConnection,
    StreamHandler,
    TcpListener,
    UdpListener,
    serve_tcp,
    serve_udp,
)
from hastack.core.stats import Stats


class Service(abc.ABC):
    name: ClassVar[str] = "service"

    def __init__(self, config: ServiceConfig, host: HostConfig | None = None) -> None:
        self.config = config
        self.host = host if host is not None else HostConfig()
        self.log = logging.getLogger(f"hastack.{self.name}")
        self.stats = Stats(self.name)
        self.tcp_listeners: list[TcpListener] = []
        self.udp_listeners: list[UdpListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        # Set by whoever runs the admin endpoint (lifecycle, test harness) once it is bound.
        self.admin_address: Address | None = None
        # The file the service was loaded from, for reload(); None when built in-process.
        self.config_path: Path | None = None

    # ---- to implement ------------------------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind sockets and start background work; return when ready to serve."""

    async def drain(self) -> None:
        """Finish in-flight work. Listeners have already stopped accepting."""

    async def close(self) -> None:
        """Flush to disk and release resources. Background tasks are already cancelled."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def admin_routes(self) -> list[web.RouteDef]:
        return []

    # ---- provided ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        grace = self.config.shutdown_timeout
        # Stop accepting everywhere first, then let each listener's connections finish.
        for listener in self.tcp_listeners:
            listener.stop_accepting()
        await asyncio.gather(*(lst.shutdown(grace) for lst in self.tcp_listeners))
        await self.drain()
        # UDP sockets close after drain(): a service may still need to send while draining
        # (heartbeat's resign message).
        for udp in self.udp_listeners:
            udp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run a long-lived background task; its failure is logged, not silent."""
        task = asyncio.create_task(self._guard(coro, name), name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any], name: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("background task %s failed", name)
            return None

    async def listen_tcp(
        self,
        address: Address,
        protocol_factory: Callable[[], ConnectionProtocol],
        *,
        name: str = "listen",
        max_connections: int = 1024,
        on_reject: Callable[[socket.socket], None] | None = None,
        backlog: int = 1024,
        ssl: SSLContext | None = None,
    ) -> TcpListener:
        listener = await serve_tcp(
            address,
            protocol_factory,
            name=name,
            max_connections=max_connections,
            on_reject=on_reject,
            backlog=backlog,
            ssl=ssl,
        )
        self.tcp_listeners.append(listener)
        return listener

    async def listen_tcp_streams(
        self,
        address: Address,
        handler: StreamHandler,
        *,
        name: str = "listen",
        max_connections: int = 1024,
        limit: int = 64 * 1024,
    ) -> TcpListener:
        return await self.listen_tcp(
            address,
            lambda: StreamConnection(handler, limit),
            name=name,
            max_connections=max_connections,
        )

    async def listen_udp(
        self,
        address: Address,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        *,
        name: str = "udp",
        rcvbuf_bytes: int | None = None,
    ) -> UdpListener:
        udp = await serve_udp(address, protocol_factory, name=name, rcvbuf_bytes=rcvbuf_bytes)
        self.udp_listeners.append(udp)
        return udp

    def addresses(self) -> dict[str, str]:
        out = {lst.name: str(lst.address) for lst in self.tcp_listeners}
        for udp in self.udp_listeners:
            out[udp.name] = str(udp.address)
        if self.admin_address is not None:
            out["admin"] = str(self.admin_address)
        return out
