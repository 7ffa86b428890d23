"""`hastack up`: one OS process per configured service, supervised.

- Start in registry order, each one only after the previous announced readiness (its notify
  pipe, see ``hastack.core.lifecycle``), so a service never starts before what it depends on.
- Forward every child's output to ours, each line prefixed with the service name.
- A child that dies is restarted with exponential backoff (``restart_initial_interval`` doubling
  to ``restart_max_interval``; reset after ``restart_reset_interval`` of uptime). Before the
  restart, the service's ``crash_cleanup`` runs here at once (heartbeat withdraws the dead
  daemon's VIPs: a SIGKILLed daemon runs no exit path of its own).
- SIGTERM/SIGINT stop the children in reverse order: SIGTERM, ``stop_timeout``, then SIGKILL.
- ``run_dir`` holds ``hastack.pid`` (for `hastack down`) and ``supervisor.json`` (for `status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hastack import registry
from hastack.config import HostConfig, StackConfig
from hastack.core.lifecycle import NOTIFY_FD_ENV, install_fast_loop, notify
from hastack.core.logs import setup_logging

log = logging.getLogger("hastack.supervisor")

PID_FILE = "hastack.pid"
STATE_FILE = "supervisor.json"


@dataclass
class Child:
    name: str
    state: str = "pending"  # pending starting running backoff stopping stopped failed
    pid: int | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    proc: asyncio.subprocess.Process | None = None
    backoff: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "addresses": self.addresses,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class StartFailed(Exception):
    pass


class Supervisor:
    def __init__(self, stack: StackConfig, *, python: str = sys.executable) -> None:
        self.stack = stack
        self.host = stack.host
        self.python = python
        self.children = {name: Child(name) for name in stack.services}
        self.stopping = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._stop_requested = asyncio.Event()

    # ---- files -------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.host.run_dir

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "config": str(self.stack.path.resolve()),
            "host": self.host.name,
            "updated": time.time(),
            "services": [c.public() for c in self.children.values()],
        }
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run_dir / STATE_FILE)

    def claim_pid_file(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pid_path = self.run_dir / PID_FILE
        other = read_pid(pid_path)
        if other is not None and other != os.getpid() and pid_alive(other):
            raise StartFailed(f"hastack is already running here (pid {other}, {pid_path})")
        pid_path.write_text(f"{os.getpid()}\n")

    def release_files(self) -> None:
        for name in (PID_FILE, STATE_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / name).unlink()

    # ---- children ----------------------------------------------------------------------------

    def argv(self, name: str) -> list[str]:
        return [self.python, "-m", "hastack", "run", name, "--config", str(self.stack.path)]

    async def spawn(self, child: Child) -> None:
        """Start one child and wait for its readiness; raise StartFailed if it never gets there."""
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        env = {**os.environ, NOTIFY_FD_ENV: str(write_fd), "PYTHONUNBUFFERED": "1"}
        child.state = "starting"
        child.addresses = {}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(child.name),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=env,
                # Our terminal's Ctrl-C reaches only us; we stop the children in order.
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        child.proc = proc
        child.pid = proc.pid
        child.started_at = time.time()
        self.write_state()
        forward = asyncio.create_task(self._forward_output(child, proc))
        self._watchers.add(forward)
        forward.add_done_callback(self._watchers.discard)

        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb")
        )
        try:
            ready = await asyncio.wait_for(self._wait_ready(reader, child), self.host.start_timeout)
        except TimeoutError:
            await self._terminate(child)
            raise StartFailed(
                f"{child.name}: not ready within {self.host.start_timeout}s"
            ) from None
        finally:
            transport.close()
        if not ready:
            code = await proc.wait()
            child.last_exit = code
            raise StartFailed(f"{child.name}: exited with {code} before it was ready")
        child.state = "running"
        self.write_state()
        notify({"event": "child_ready", "service": child.name, "pid": child.pid})
        watcher = asyncio.create_task(self._watch(child, proc))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _wait_ready(self, reader: asyncio.StreamReader, child: Child) -> bool:
        while True:
            line = await reader.readline()
            if not line:
                return False  # pipe closed: the child exited
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                child.addresses = dict(event.get("addresses", {}))
                return True

    async def _forward_output(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        prefix = f"{child.name:<9}| ".encode()
        out = sys.stdout.buffer
        while line := await proc.stdout.readline():
            out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            out.flush()

    async def _watch(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        child.last_exit = code
        if self.stopping or child.proc is not proc:
            return
        uptime = time.time() - (child.started_at or time.time())
        log.warning("%s (pid %s) exited with %s after %.1fs", child.name, proc.pid, code, uptime)
        child.state = "backoff"
        child.pid = None
        self.write_state()
        notify({"event": "child_exit", "service": child.name, "code": code})
        await self._crash_cleanup(child)
        if uptime >= self.host.restart_reset_interval:
            child.backoff = 0.0
        while not self.stopping:
            child.backoff = (
                self.host.restart_initial_interval
                if child.backoff == 0
                else min(child.backoff * 2, self.host.restart_max_interval)
            )
            log.info("%s: restarting in %.2fs", child.name, child.backoff)
            try:
                await asyncio.wait_for(self._stop_requested.wait(), child.backoff)
                return  # stopping while we waited
            except TimeoutError:
                pass
            child.restarts += 1
            try:
                await self.spawn(child)
                log.info("%s: restarted (pid %s)", child.name, child.pid)
                return
            except StartFailed as exc:
                log.error("%s", exc)
                child.state = "backoff"
                child.pid = None
                self.write_state()
                await self._crash_cleanup(child)

    async def _crash_cleanup(self, child: Child) -> None:
        cleanup = registry.crash_cleanup(child.name)
        if cleanup is None:
            return
        try:
            await asyncio.to_thread(cleanup, self.stack.services[child.name], self.host)
            log.info("%s: crash cleanup done", child.name)
            notify({"event": "crash_cleanup", "service": child.name})
        except Exception:
            log.exception("%s: crash cleanup failed", child.name)

    async def _terminate(self, child: Child) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            child.state = "stopped"
            return
        child.state = "stopping"
        self.write_state()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), self.host.stop_timeout)
        except TimeoutError:
            log.warning(
                "%s: no exit %.1fs after SIGTERM; SIGKILL", child.name, self.host.stop_timeout
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            await self._crash_cleanup(child)
        child.last_exit = code
        child.state = "stopped"
        child.pid = None
        self.write_state()

    # ---- the whole run -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.claim_pid_file()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            self._stop_requested.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        code = 0
        try:
            self.write_state()
            for child in self.children.values():
                if self._stop_requested.is_set():
                    break
                try:
                    await self.spawn(child)
                except StartFailed as exc:
                    log.error("%s; stopping everything", exc)
                    child.state = "failed"
                    code = 1
                    break
            if code == 0 and not self._stop_requested.is_set():
                print_addresses(self.children.values())
                notify(
                    {
                        "event": "ready",
                        "pid": os.getpid(),
                        "addresses": {c.name: c.addresses for c in self.children.values()},
                    }
                )
                await self._stop_requested.wait()
        finally:
            self.stopping = True
            for child in reversed(list(self.children.values())):
                await self._terminate(child)
            for task in list(self._watchers):
                task.cancel()
            self.release_files()
        log.info("all services stopped")
        return code


def print_addresses(children: Any) -> None:
    lines = ["hastack is up:"]
    for child in children:
        where = ", ".join(f"{k} {v}" for k, v in child.addresses.items()) or "-"
        lines.append(f"  {child.name:<10} pid {child.pid:<8} {where}")
    print("\n".join(lines), flush=True)


def run_supervisor(stack: StackConfig) -> int:
    setup_logging("supervisor", stack.host.log_level, stack.host.syslog, stack.host.name)
    if not stack.services:
        log.error("%s configures no services", stack.path)
        return 2
    install_fast_loop()
    sup = Supervisor(stack)
    try:
        return asyncio.run(sup.run())
    except StartFailed as exc:
        log.error("%s", exc)
        return 1


# ---- `hastack status` and `hastack down` ---------------------------------------------------


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(host: HostConfig) -> dict[str, Any] | None:
    pid = read_pid(host.run_dir / PID_FILE)
    if pid is None or not pid_alive(pid):
        return None
    try:
        state: dict[str, Any] = json.loads((host.run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def status_rows(state: dict[str, Any], now: float) -> list[list[str]]:
    rows = []
    for svc in state["services"]:
        addresses = svc.get("addresses") or {}
        # UDP and TCP on one port (syslog) show once
        address = " ".join(dict.fromkeys(v for k, v in addresses.items() if k != "admin")) or "-"
        up = (
            format_duration(now - svc["started_at"])
            if svc.get("started_at") and svc["state"] == "running"
            else "-"
        )
        rows.append(
            [
                svc["name"],
                str(svc.get("pid") or "-"),
                address,
                svc["state"],
                up,
                str(svc["restarts"]),
            ]
        )
    return rows


def print_status(host: HostConfig, *, as_json: bool = False) -> int:
    state = read_state(host)
    if state is None:
        print(f"hastack is not running (no live supervisor in {host.run_dir})")
        return 3  # LSB: program is not running
    if as_json:
        print(json.dumps(state, indent=1))
        return 0
    print(f"supervisor pid {state['pid']}, host {state['host']}, config {state['config']}")
    headers = ["SERVICE", "PID", "ADDRESS", "STATE", "UPTIME", "RESTARTS"]
    print(format_table(headers, status_rows(state, time.time())))
    return 0


def stop_running(host: HostConfig, *, timeout: float = 60.0) -> int:
    pid = read_pid(host.run_dir / PID_FILE)
    if pid is None or not pid_alive(pid):
        print(f"hastack is not running (no live supervisor in {host.run_dir})")
        return 0
    os.kill(pid, signal.SIGTERM)
    print(f"sent SIGTERM to supervisor pid {pid}; waiting", end="", flush=True)
    deadline = time.monotonic() + timeout
    polls = 0
    while pid_alive(pid) and not _is_zombie(pid):
        if time.monotonic() > deadline:
            print(f"\nsupervisor pid {pid} still running after {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.1)  # polling another process's exit: there is nothing to await
        polls += 1
        if polls % 10 == 0:
            print(".", end="", flush=True)  # progress, once a second
    print(" stopped")
    return 0


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
