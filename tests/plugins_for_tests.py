"""Toy services for the supervisor tests, loaded through $HASTACK_PLUGINS.

``first`` and ``second`` are echo services (``second`` records when it started, so a test can
check it started only after ``first`` was ready); ``crashy`` exits on its own when told to over TCP.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hastack.config import ServiceConfig, setting
from hastack.core.net import ConnectionProtocol
from hastack.echo.config import EchoConfig
from hastack.echo.server import EchoService
from hastack.registry import ServiceSpec


@dataclass(frozen=True, kw_only=True)
class StampedEchoConfig(EchoConfig):
    stamp_file: Path | None = setting(None, help="append 'name started ready' times here")


class FirstService(EchoService):
    name = "first"

    async def start(self) -> None:
        cfg = self.config
        assert isinstance(cfg, StampedEchoConfig)
        began = time.time()
        await super().start()
        if cfg.stamp_file is not None:
            with cfg.stamp_file.open("a") as f:
                f.write(f"{self.name} {began} {time.time()} {os.getpid()}\n")


class SecondService(FirstService):
    name = "second"


class CrashProtocol(ConnectionProtocol):
    def data_received(self, data: bytes) -> None:
        if b"crash" in data:
            os._exit(3)  # an abrupt death: no cleanup, like a real crash
        if b"hang" in data:
            # Stop handling signals so only SIGKILL ends us: models a stuck process.
            import signal

            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            assert self.transport is not None
            self.transport.write(b"hanging\n")


@dataclass(frozen=True, kw_only=True)
class CrashyConfig(EchoConfig):
    cleanup_file: Path | None = setting(None, help="crash_cleanup appends a line here")


def record_cleanup(config: ServiceConfig, host: object) -> None:
    """The supervisor calls this after crashy died without a clean exit."""
    assert isinstance(config, CrashyConfig)
    if config.cleanup_file is not None:
        with config.cleanup_file.open("a") as f:
            f.write(f"cleanup {time.time()}\n")


class CrashyService(EchoService):
    name = "crashy"

    async def start(self) -> None:
        await self.listen_tcp(self.cfg.listen, CrashProtocol)


class StuckStopService(EchoService):
    """Its graceful stop never finishes by itself: drain() waits until cancelled."""

    name = "stuck"

    async def drain(self) -> None:
        await asyncio.Event().wait()


SERVICE_SPECS = [
    ServiceSpec("stuck", "hastack.echo.config:EchoConfig", f"{__name__}:StuckStopService"),
    ServiceSpec("first", f"{__name__}:StampedEchoConfig", f"{__name__}:FirstService"),
    ServiceSpec("second", f"{__name__}:StampedEchoConfig", f"{__name__}:SecondService"),
    ServiceSpec(
        "crashy",
        f"{__name__}:CrashyConfig",
        f"{__name__}:CrashyService",
        crash_cleanup=f"{__name__}:record_cleanup",
    ),
]

__all__ = ["SERVICE_SPECS", "ServiceConfig"]
