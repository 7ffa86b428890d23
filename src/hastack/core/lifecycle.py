"""Running one service in this process: `hastack run SERVICE --config FILE`.

start -> admin endpoint -> announce readiness -> wait for SIGTERM/SIGINT -> graceful stop
(bounded by the service's ``shutdown_timeout``) -> exit 0. A second signal cancels the stop and
exits 1 at once. SIGHUP calls the service's ``reload()`` when it has one.

Readiness is announced on the file descriptor named by ``HASTACK_NOTIFY_FD`` (set by the
supervisor and the test harness) as one JSON line:
{"event": "ready", "pid": ..., "addresses": {...}}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from typing import Any

from hastack import registry
from hastack.config import StackConfig
from hastack.core.admin import AdminServer
from hastack.core.logs import setup_logging
from hastack.core.service import Service
from hastack.errors import ServiceError

NOTIFY_FD_ENV = "HASTACK_NOTIFY_FD"
log = logging.getLogger("hastack.lifecycle")


def install_fast_loop() -> None:
    """Use uvloop when it is installed (DESIGN.md principle 7); plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def notify(event: dict[str, Any]) -> None:
    fd_text = os.environ.get(NOTIFY_FD_ENV)
    if not fd_text:
        return
    try:
        os.write(int(fd_text), (json.dumps(event) + "\n").encode())
    except (OSError, ValueError) as exc:
        log.warning("cannot announce %s on fd %s: %s", event.get("event"), fd_text, exc)


def run_service(name: str, stack: StackConfig) -> int:
    """Run the named service of ``stack`` until signalled; return the process exit code."""
    config = stack.services[name]
    setup_logging(
        name, config.log_level or stack.host.log_level, stack.host.syslog, stack.host.name
    )
    install_fast_loop()
    try:
        return asyncio.run(_serve(name, stack))
    except KeyboardInterrupt:
        return 130


async def _serve(name: str, stack: StackConfig) -> int:
    config = stack.services[name]
    service: Service = registry.service_class(name)(config, stack.host)
    service.config_path = stack.path
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    main_task = asyncio.current_task()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("%s: received %s, stopping", name, signal.Signals(signum).name)
            stop_requested.set()
        elif main_task is not None:
            log.warning("%s: second signal, stopping now", name)
            main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    reload = getattr(service, "reload", None)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: service.spawn(reload(), name="reload"))

    admin: AdminServer | None = None
    try:
        try:
            await service.start()
            if config.admin_listen is not None:
                admin = AdminServer(service, config.admin_listen)
                await admin.start()
                service.admin_address = admin.address
        except (OSError, ServiceError) as exc:
            log.error("%s: cannot start: %s", name, exc)
            await service.stop()
            return 2
        addresses = service.addresses()
        log.info("%s ready: %s", name, ", ".join(f"{k} {v}" for k, v in addresses.items()) or "-")
        notify({"event": "ready", "service": name, "pid": os.getpid(), "addresses": addresses})
        await stop_requested.wait()
        try:
            await asyncio.wait_for(service.stop(), config.shutdown_timeout)
        except TimeoutError:
            log.error("%s: graceful stop exceeded %.1fs", name, config.shutdown_timeout)
            return 1
        log.info("%s stopped", name)
        return 0
    except asyncio.CancelledError:
        return 1
    finally:
        if admin is not None:
            await admin.stop()
