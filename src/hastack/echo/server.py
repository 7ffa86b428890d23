from __future__ import annotations

import asyncio

from hastack.core.net import ConnectionProtocol
from hastack.core.service import Service
from hastack.echo.config import EchoConfig


class EchoProtocol(ConnectionProtocol):
    def __init__(self, service: EchoService) -> None:
        self.service = service
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        limit = self.service.cfg.max_line_bytes
        while (idx := self.buf.find(b"\n")) >= 0:
            line = bytes(self.buf[: idx + 1])
            del self.buf[: idx + 1]
            self.service.lines.value += 1
            assert self.transport is not None
            self.transport.write(self.service.prefix + line)
        if len(self.buf) > limit and self.transport is not None:
            self.transport.close()


class EchoService(Service):
    name = "echo"

    def __init__(self, config: EchoConfig, host=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, host)
        self.cfg = config
        self.prefix = f"{self.host.name} ".encode()
        self.lines = self.stats.counter("lines", "lines echoed")

    async def start(self) -> None:
        if self.cfg.start_delay:
            await asyncio.sleep(self.cfg.start_delay)
        listener = await self.listen_tcp(
            self.cfg.listen, lambda: EchoProtocol(self), max_connections=self.cfg.max_connections
        )
        self.stats.gauge("curr_connections", lambda: listener.connections)
