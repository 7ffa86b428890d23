"""A heartbeat cluster on ``hastack.testing.netns.TestBed``, shared by tests and benchmarks.

Three nodes (n1..n3) and a client on one bridge. Each node runs ``hastack up`` (the supervisor
with a ``[heartbeat]`` table, so kill -9 of the daemon goes through ``crash_cleanup``) and an echo
server on ``0.0.0.0:7007``; the client connects to the VIP every 10 ms and records who answered.
``ip -ts monitor address`` in each node namespace gives the VIP timeline.

``groups`` switches to several resource groups (``[[heartbeat.groups]]``), each with its own VIP
(``.vip_octet``) and per-node priorities; the helpers that look at one VIP take ``vip=`` and
default to ``.vip`` (the first group's VIP).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hastack.testing import HastackProcess, poll_until, write_config
from hastack.testing.netns import TestBed

ECHO_PORT = 7007

PROBE = r"""
import socket, sys, time
vip, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
next_t = time.monotonic()
while True:
    t = time.time()
    try:
        with socket.create_connection((vip, port), timeout=0.05) as s:
            s.sendall(b"ping\n")
            s.settimeout(0.1)
            data = s.recv(200)
        who = data.split(b" ", 1)[0].decode() or "fail"
    except OSError:
        who = "fail"
    sys.stdout.write(f"{t:.6f} {who}\n")
    sys.stdout.flush()
    next_t += interval
    delay = next_t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_t = time.monotonic()
"""


class Lines:
    """Collects a subprocess's stdout lines (with arrival time) in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.lines)


_TS = re.compile(r"^\[([0-9T:.\-]+)\]\s*(Deleted )?.*inet (\d+\.\d+\.\d+\.\d+)/")


@dataclass
class Probe:
    """Client requests: (wall time, responder or "fail")."""

    lines: Lines

    def samples(self) -> list[tuple[float, str]]:
        out = []
        for line in self.lines.snapshot():
            t, _, who = line.partition(" ")
            with contextlib.suppress(ValueError):
                out.append((float(t), who))
        return out

    def failover(self, since: float, old: str | None, new: str) -> tuple[float, int] | None:
        """(last success of ``old`` -> first success of ``new`` after ``since``, failures)."""
        s = [x for x in self.samples() if x[0] >= since - 1.0]
        first_new = next((t for t, w in s if w == new and t >= since), None)
        if first_new is None:
            return None
        before = [t for t, w in s if w != "fail" and w != new and t < first_new]
        if old is not None:
            before = [t for t, w in s if w == old and t < first_new]
        last_old = max(before) if before else since
        fails = sum(1 for t, w in s if last_old < t < first_new and w == "fail")
        return first_new - last_old, fails


@dataclass
class HaCluster:
    bed: TestBed
    workdir: Path
    vip_octet: int = 50
    keepalive: float = 0.1
    deadtime: float = 0.4
    quorum: bool = True
    auto_failback: bool = True
    fence: bool = False
    restart_delay: float = 1.0
    transport: str = "unicast"  # or "multicast" / "broadcast"
    supervised: bool = True  # `hastack up` (crash_cleanup after kill -9) or bare `hastack run`
    extra: str = ""
    nodes: dict[str, HastackProcess] = field(default_factory=dict)
    monitors: dict[str, Lines] = field(default_factory=dict)
    echo: dict[str, HastackProcess] = field(default_factory=dict)
    probe: Probe | None = None
    priorities: dict[str, int] = field(default_factory=lambda: {"n1": 150, "n2": 100, "n3": 50})
    # resource groups: (name, VIP octet, {node: priority}); empty = one group on .vip
    groups: list[tuple[str, int, dict[str, int]]] = field(default_factory=list)

    @property
    def vip(self) -> str:
        return f"{self.bed.subnet}.{self.groups[0][1] if self.groups else self.vip_octet}"

    @property
    def vips(self) -> list[str]:
        """Every configured VIP (one per group)."""
        if not self.groups:
            return [self.vip]
        return [f"{self.bed.subnet}.{octet}" for _, octet, _ in self.groups]

    @property
    def names(self) -> list[str]:
        return [h for h in self.bed.hosts if h != "client"]

    # -- config ---------------------------------------------------------------------------

    def fence_script(self) -> Path:
        path = self.workdir / "fence.sh"
        path.write_text(
            "#!/bin/sh\n# STONITH stand-in: withdraw the silent master's address from outside\n"
            f'ip -n "{self.bed.prefix}-$HASTACK_FENCE_NODE" addr del {self.vip}/24 dev eth0 '
            "2>/dev/null\nexit 0\n"
        )
        path.chmod(0o755)
        return path

    def config(self, name: str) -> Path:
        peers = ", ".join(f'"{self.bed.ip(n)}:694"' for n in self.names if n != name)
        if self.transport == "multicast":
            peers = ""
            transport = (
                'multicast_group = "239.0.0.18:694"\n'
                f'multicast_interface = "{self.bed.ip(name)}"\n'
            )
        elif self.transport == "broadcast":
            peers = ""
            transport = f'broadcast = "{self.bed.subnet}.255:694"\n'
        else:
            transport = ""
        nodes = ", ".join(f'"{n}"' for n in self.names)
        fence = f'fence_command = ["{self.fence_script()}"]\n' if self.fence else ""
        vips = "" if self.groups else f'vips = ["{self.vip}/24"]\n'
        groups = "".join(
            f'\n[[heartbeat.groups]]\nname = "{group}"\npriority = {prios[name]}\n'
            f'vips = ["{self.bed.subnet}.{octet}/24"]\n'
            for group, octet, prios in self.groups
        )
        d = self.workdir / name
        return write_config(d, f"""
[hastack]
name = "{name}"
run_dir = "{d / 'run'}"
data_dir = "{d / 'data'}"
restart_initial_interval = {self.restart_delay}
stop_timeout = 10.0

[heartbeat]
admin_listen = "127.0.0.1:7070"
nodes = [{nodes}]
address = "{self.bed.ip(name)}"
priority = {self.priorities[name]}
bind = "0.0.0.0:694"
unicast_peers = [{peers}]
auth_keys = {{ "1" = "netns-test-secret" }}
keepalive_interval = {self.keepalive}
warn_timeout = {self.deadtime * 0.75}
dead_timeout = {self.deadtime}
initdead_timeout = {self.deadtime * 3}
auto_failback = {str(self.auto_failback).lower()}
quorum = {str(self.quorum).lower()}
{vips}garp_repeat_intervals = [0.5, 1.0]
{transport}{fence}{self.extra}
{groups}""")

    # -- processes ------------------------------------------------------------------------

    def wrap(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.bed.ns(host)]

    def start_echo(self) -> None:
        for name in self.names:
            cfg = write_config(self.workdir / f"echo-{name}", f"""
[hastack]
name = "{name}"
run_dir = "{self.workdir / f'echo-{name}' / 'run'}"
data_dir = "{self.workdir / f'echo-{name}' / 'data'}"

[echo]
listen = "0.0.0.0:{ECHO_PORT}"
""")
            proc = HastackProcess(cfg, "echo", wrap=self.wrap(name))
            self.echo[name] = proc.start()

    def start_node(self, name: str) -> HastackProcess:
        cfg = str(self.config(name))
        args = ["--config", cfg, "up"] if self.supervised else ["run", "heartbeat", "--config", cfg]
        proc = HastackProcess(Path(cfg), args=args, wrap=self.wrap(name))
        self.nodes[name] = proc.start()
        return proc

    def start(self, names: list[str] | None = None) -> None:
        for name in names or self.names:
            self.start_node(name)

    def daemon_pid(self, name: str, timeout: float = 20.0) -> int:
        """PID of the heartbeat daemon (the child under ``name``'s supervisor)."""
        if not self.supervised:
            return self.nodes[name].pid
        state = self.workdir / name / "run" / "supervisor.json"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(state.read_text())
                for svc in data["services"]:
                    if svc["name"] == "heartbeat" and svc["state"] == "running" and svc["pid"]:
                        return int(svc["pid"])
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: heartbeat not running")
            time.sleep(0.05)

    def signal_daemon(self, name: str, sig: signal.Signals) -> int:
        pid = self.daemon_pid(name)
        os.kill(pid, sig)
        return pid

    def stop_node(self, name: str) -> int:
        proc = self.nodes.pop(name)
        return proc.stop(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.nodes):
            with contextlib.suppress(ProcessLookupError, AssertionError):
                os.kill(self.daemon_pid(name, timeout=0.1), signal.SIGCONT)  # if frozen
            self.stop_node(name)

    def start_monitors(self) -> None:
        for name in self.names:
            # `ip -ts` stamps an event when it *reads* it: a monitor starved of CPU would stamp
            # late and could fake an overlap. Real-time priority keeps the stamps honest (the
            # monitors are idle otherwise).
            rt = ["chrt", "-f", "50"] if shutil.which("chrt") and os.geteuid() == 0 else []
            proc = subprocess.Popen(
                [*rt, "ip", "-ts", "-n", self.bed.ns(name), "monitor", "address"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            )
            self.bed._procs.append(proc)
            self.monitors[name] = Lines(proc)
        # Handshake instead of a guess: add a marker address on lo in every node and wait until
        # each monitor has reported it, so the monitors are subscribed before any fault.
        marker = "127.213.0.1"
        for name in self.names:
            self.bed.run(name, ["ip", "addr", "add", f"{marker}/32", "dev", "lo"])

        def reported(lines: Lines) -> bool:
            return any(f"inet {marker}/" in line for line in lines.snapshot())

        for name in self.names:
            poll_until(
                functools.partial(reported, self.monitors[name]),
                10,
                f"ip monitor on {name} to subscribe",
            )
            self.bed.run(name, ["ip", "addr", "del", f"{marker}/32", "dev", "lo"])

    def start_probe(self, interval: float = 0.01) -> Probe:
        proc = self.bed.popen(
            "client", [sys.executable, "-u", "-c", PROBE, self.vip, str(ECHO_PORT), str(interval)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self.probe = Probe(Lines(proc))
        return self.probe

    # -- observation ----------------------------------------------------------------------

    def holders(self, vip: str | None = None) -> list[str]:
        return self.bed.holders(vip or self.vip)

    def vip_events(self, vip: str | None = None) -> list[tuple[float, str, int]]:
        """(time, node, +1 add / -1 delete) for the VIP, from the address monitors."""
        vip = vip or self.vip
        out: list[tuple[float, str, int]] = []
        for name, lines in self.monitors.items():
            for line in lines.snapshot():
                m = _TS.match(line)
                if not m or m.group(3) != vip:
                    continue
                t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
                out.append((t, name, -1 if m.group(2) else 1))
        out.sort(key=lambda e: (e[0], e[2]))
        return out

    def max_concurrent_holders(self, since: float = 0.0, vip: str | None = None) -> int:
        """Most nodes holding the VIP at once (events from ``since``; none held before)."""
        held: set[str] = set()
        worst = 0
        for t, name, delta in self.vip_events(vip):
            if t < since:
                continue
            if delta > 0:
                held.add(name)
            else:
                held.discard(name)
            worst = max(worst, len(held))
        return worst

    def assert_one_holder(self, since: float, vip: str | None = None) -> None:
        """At most one VIP holder at any moment since ``since`` (and at least one held it)."""
        events = [e for e in self.vip_events(vip) if e[0] >= since]
        worst = self.max_concurrent_holders(since, vip)
        timeline = "\n".join(f"  {t - since:8.3f}s {n} {'add' if d > 0 else 'del'}"
                             for t, n, d in events)
        assert worst == 1, f"{worst} holders at once; VIP timeline:\n{timeline}"

    def wait_for(self, cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        return poll_until(cond, timeout, what)

    def wait_master(self, name: str, timeout: float = 20.0, vip: str | None = None) -> None:
        vip = vip or self.vip
        self.wait_for(lambda: self.holders(vip) == [name], timeout, f"{name} to hold {vip}")

    def wait_served_by(self, name: str, since: float | None = None, timeout: float = 20.0) -> float:
        assert self.probe is not None
        t0 = time.time() if since is None else since
        probe = self.probe

        def served() -> float | None:
            return next((t for t, w in probe.samples() if w == name and t >= t0), None)

        result: float = self.wait_for(served, timeout, f"client answered by {name}")
        return result

    def ha_status(self, name: str) -> dict[str, Any]:
        """`hastack ha status --json` run inside ``name``'s namespace."""
        done = self.bed.run(name, [sys.executable, "-m", "hastack", "ha", "--admin",
                                   "127.0.0.1:7070", "status", "--json"], check=False)
        if done.returncode != 0:
            return {}
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def arp_points_at(self, name: str, vip: str | None = None) -> bool:
        return self.bed.neighbour_mac("client", vip or self.vip) == self.bed.mac(name)

    def ask(self, vip: str) -> str:
        """Which node's echo server answers the client on ``vip`` ("fail" if none)."""
        code = (
            "import socket, sys\n"
            "try:\n"
            f"    s = socket.create_connection(('{vip}', {ECHO_PORT}), timeout=1)\n"
            "    s.sendall(b'ping\\n'); s.settimeout(1)\n"
            "    print(s.recv(200).split(b' ', 1)[0].decode() or 'fail')\n"
            "except OSError:\n"
            "    print('fail')\n"
        )
        done = self.bed.run("client", [sys.executable, "-c", code], check=False)
        return done.stdout.strip() or "fail"


@contextlib.contextmanager
def ha_cluster(bed: TestBed, workdir: Path, **kw: Any) -> Iterator[HaCluster]:
    cluster = HaCluster(bed, workdir, **kw)
    try:
        yield cluster
    finally:
        cluster.stop_all()
