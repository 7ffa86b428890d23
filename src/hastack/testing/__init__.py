"""Harness for hastack's own tests and benchmarks.

- ``running_service``: a service in this process on real sockets (port 0).
- ``HastackProcess``: `hastack run SERVICE` as a subprocess, waited on for readiness.
- ``netns.TestBed``: several hosts on one machine (see ``hastack.testing.netns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from hastack.config import HostConfig, ServiceConfig
from hastack.core.admin import AdminServer
from hastack.core.lifecycle import NOTIFY_FD_ENV
from hastack.core.service import Service

S = TypeVar("S", bound=Service)


@contextlib.asynccontextmanager
async def running_service(
    service_cls: type[S], config: ServiceConfig, host: HostConfig | None = None
) -> AsyncIterator[S]:
    """Start ``service_cls(config)`` in this event loop; stop it gracefully afterwards.

    With ``admin_listen`` in the config, the admin endpoint runs too; its bound address is in
    ``service.addresses()["admin"]``, as in a real process's readiness announcement.
    """
    if host is None:
        data_dir = Path(tempfile.mkdtemp(prefix="hastack-test-"))
        host = HostConfig(name="test-host", run_dir=data_dir / "run", data_dir=data_dir)
    service = service_cls(config, host)
    await service.start()
    admin: AdminServer | None = None
    try:
        if config.admin_listen is not None:
            admin = AdminServer(service, config.admin_listen)
            await admin.start()
            service.admin_address = admin.address
        yield service
    finally:
        try:
            await service.stop()
        finally:
            if admin is not None:
                await admin.stop()


def missing_peer(reason: str) -> NoReturn:
    """A test's real peer (daemon, tool, client library) is absent: skip with the reason, but
    fail when ``CI`` is set, where .ci/run installs every peer and a skip would hide a gap."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)


def require_binary(name: str, package: str) -> str:
    """The path of command ``name``; ``missing_peer`` when it is not installed."""
    path = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if path is None:
        missing_peer(f"{name} is not installed (Debian package {package}, .ci/apt-packages.txt)")
    return path


def poll_until(
    cond: Callable[[], Any], timeout: float = 20.0, what: str = "", interval: float = 0.02
) -> Any:
    """Block until ``cond()`` is truthy and return its value; AssertionError after ``timeout``.

    For conditions nothing can notify us about (another process's files, a kernel table):
    the deadline is a generous guard, never a synchronisation.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(interval)


async def wait_until(
    cond: Callable[[], Any], timeout: float = 20.0, what: str = "", interval: float = 0.01
) -> Any:
    """The asyncio twin of ``poll_until``; ``cond`` may also return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(interval)


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (prefer port 0 where the server reports its port)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def write_config(directory: Path, text: str, name: str = "hastack.toml") -> Path:
    """Write a config file; a missing [hastack] table gets run_dir/data_dir inside ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if "[hastack]" not in text:
        text = (
            f'[hastack]\nname = "test-host"\nrun_dir = "{directory / "run"}"\n'
            f'data_dir = "{directory / "data"}"\n\n' + text
        )
    path = directory / name
    path.write_text(text)
    return path


def hastack_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hastack", *args]


class ProcessError(RuntimeError):
    pass


class HastackProcess:
    """`hastack <args>` (by default `run SERVICE --config FILE`) in a subprocess.

    On enter it waits until the process announces readiness on its notify pipe (or fails with
    the process output if it exits or times out first). Output is collected in the background.
    """

    def __init__(
        self,
        config: Path,
        service: str | None = None,
        *,
        args: Sequence[str] | None = None,
        ready_timeout: float = 30.0,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
        wait_ready: bool = True,
    ) -> None:
        if args is None:
            if service is None:
                raise ValueError("give a service or args")
            args = ["run", service, "--config", str(config)]
        self.argv = [*wrap, *hastack_argv(*args)]
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {})}
        self.wait_ready = wait_ready
        self.addresses: dict[str, Any] = {}
        self._pending = b""
        self.events: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._output: list[str] = []
        self._output_changed = threading.Condition()
        self._output_done = False
        self._reader: threading.Thread | None = None
        self._notify_r = -1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> HastackProcess:
        r, w = os.pipe()
        self._notify_r = r
        env = {**self.env, NOTIFY_FD_ENV: str(w), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(w,),
            env=env,
        )
        os.close(w)
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        if self.wait_ready:
            self.wait_for_event("ready", self.ready_timeout)
        return self

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._output_changed:
                self._output.append(raw.decode(errors="replace"))
                self._output_changed.notify_all()
        with self._output_changed:
            self._output_done = True
            self._output_changed.notify_all()

    def wait_for_event(
        self, name: str, timeout: float, *, count: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """Read notify events until the ``count``-th one named ``name`` (matching ``fields``)."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [
                ev
                for ev in self.events
                if ev.get("event") == name and all(ev.get(k) == v for k, v in fields.items())
            ]
            if len(matching) >= count:
                return matching[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProcessError(f"no {name!r} within {timeout}s: {self.argv}\n{self.output()}")
            ready, _, _ = select.select([self._notify_r], [], [], min(remaining, 0.5))
            if not ready:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ProcessError(
                        f"exited with {self.proc.returncode} before {name!r}: {self.argv}\n"
                        + self.output()
                    )
                continue
            chunk = os.read(self._notify_r, 65536)
            if not chunk:
                if self.proc is not None:
                    self.proc.wait(timeout=5)
                raise ProcessError(f"closed its notify pipe before {name!r}\n{self.output()}")
            self._pending += chunk
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                ev = json.loads(line)
                self.events.append(ev)
                if ev.get("event") == "ready":
                    self.addresses = dict(ev.get("addresses", {}))

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until ``text`` appears in the process output (stdout and stderr)."""
        with self._output_changed:
            found = self._output_changed.wait_for(
                lambda: self._output_done or text in "".join(self._output), timeout
            )
            if found and text in "".join(self._output):
                return
        why = "exited before logging" if self._output_done else f"within {timeout}s no"
        raise ProcessError(f"{why} {text!r}\n{self.output()}")

    def output(self) -> str:
        if self._reader is not None and self.proc is not None and self.proc.poll() is not None:
            self._reader.join(timeout=2)
        return "".join(self._output)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.terminate()
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> HastackProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.stop(timeout=15)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._notify_r >= 0:
            os.close(self._notify_r)
            self._notify_r = -1
