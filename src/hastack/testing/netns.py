"""A multi-host test bed on one machine: network namespaces, veth pairs and a bridge.

Layout (shared/reference/heartbeat.md section 10): the bridge lives in its own namespace; every
host (and the client) is a namespace with one ``eth0`` whose peer is a port of that bridge. All
addresses of the test subnet exist only inside the namespaces; the root namespace gets no
interface, address or route, and every process that sends test traffic runs inside a namespace.
Teardown kills exactly the PIDs inside the bed's namespaces and deletes them, also after a failed
test (use it as a context manager or pytest fixture).

Fault injection, each modelling a different failure:
- ``link_down(h)``: carrier loss (cable pulled, host dead);
- ``block(h)``: bridge port disabled with carrier up: a partition the host cannot see locally;
- ``mcast_off()``: multicast not flooded (IGMP snooping, clouds).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

NAMESPACE_PREFIX = "hst"
_counter = itertools.count(1)


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, veth, bridge)"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"network namespace tests need iproute2's `{tool}` command"
    probe = f"{NAMESPACE_PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_netns() -> None:
    """Skip the calling test when namespaces are unavailable; fail instead when CI is set."""
    import pytest

    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the namespace tests to run, but: {reason}")
    pytest.skip(reason)


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by test beds whose process no longer exists."""
    removed = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{NAMESPACE_PREFIX}(\d+)x\d+-", name)
        if not m:
            continue
        owner = int(m.group(1))
        if owner != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            _kill_namespace_pids(name)
            _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


def _kill_namespace_pids(ns: str) -> None:
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


class TestBed:
    """N hosts (n1..nN) and optionally a client on one bridge, in namespaces.

    Host ``nI`` has address ``<subnet>.1I`` (n1 -> .11) and MAC ``02:13:00:00:00:1I``; the
    client has ``<subnet>.100``. ``subnet`` is the first three octets.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: int = 3, client: bool = True, subnet: str = "10.213.0") -> None:
        if not 1 <= hosts <= 9:
            raise ValueError("1 to 9 hosts")
        self.subnet = subnet
        self.prefix = f"{NAMESPACE_PREFIX}{os.getpid()}x{next(_counter)}"
        self.switch = f"{self.prefix}-sw"
        self.hosts = [f"n{i}" for i in range(1, hosts + 1)]
        if client:
            self.hosts.append("client")
        self._procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []

    # ---- naming ------------------------------------------------------------------------------

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def _index(self, host: str) -> int:
        return 100 if host == "client" else int(host[1:])

    def ip(self, host: str) -> str:
        i = self._index(host)
        return f"{self.subnet}.{i if host == 'client' else 10 + i}"

    def mac(self, host: str) -> str:
        i = self._index(host)
        return "02:13:00:00:01:00" if host == "client" else f"02:13:00:00:00:1{i}"

    def port(self, host: str) -> str:
        """The bridge port (in the switch namespace) that ``host`` is plugged into."""
        return f"p{self._index(host)}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> TestBed:
        self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def setup(self) -> None:
        remove_stale_namespaces()
        try:
            self._add_ns(self.switch)
            sw = ["ip", "-n", self.switch]
            _run([*sw, "link", "add", "br0", "type", "bridge"])
            _run([*sw, "link", "set", "br0", "up"])
            for host in self.hosts:
                ns = self._add_ns(self.ns(host))
                port = self.port(host)
                _run(
                    [*sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]
                )
                _run([*sw, "link", "set", port, "master", "br0", "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                _run(["ip", "-n", ns, "link", "set", "eth0", "address", self.mac(host)])
                _run(["ip", "-n", ns, "addr", "add", f"{self.ip(host)}/24", "dev", "eth0"])
                _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        except BaseException:
            self.teardown()
            raise

    def _add_ns(self, name: str) -> str:
        _run(["ip", "netns", "add", name])
        self._made.append(name)
        return name

    def teardown(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for ns in reversed(self._made):
            _kill_namespace_pids(ns)
            _run(["ip", "netns", "del", ns], check=False)
        self._made.clear()

    # ---- running things inside ---------------------------------------------------------------

    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(
        self, host: str, argv: Sequence[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(host, argv), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"[{host}] {' '.join(argv)}: {done.returncode}: {done.stderr}")
        return done

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside ``host``; it is killed at teardown if still running."""
        proc = subprocess.Popen(self.argv(host, argv), **kwargs)
        self._procs.append(proc)
        return proc

    # ---- observing ---------------------------------------------------------------------------

    def addresses(self, host: str, dev: str = "eth0") -> list[str]:
        """IPv4 addresses on ``dev`` inside ``host`` (without prefix length)."""
        out = _run(["ip", "-n", self.ns(host), "-4", "-o", "addr", "show", "dev", dev]).stdout
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)

    def holders(self, address: str) -> list[str]:
        """Which hosts currently have ``address`` configured."""
        return [h for h in self.hosts if address in self.addresses(h)]

    def neighbour_mac(self, host: str, address: str) -> str | None:
        """The MAC ``host``'s ARP cache has for ``address`` (None if absent or FAILED)."""
        out = _run(["ip", "-n", self.ns(host), "neigh", "show", address]).stdout
        m = re.search(r"lladdr ([0-9a-f:]{17})", out)
        return m.group(1) if m else None

    def host_of_mac(self, mac: str) -> str | None:
        for h in self.hosts:
            if self.mac(h) == mac:
                return h
        return None

    # ---- faults ------------------------------------------------------------------------------

    def link_down(self, host: str) -> None:
        """Carrier loss: the host's eth0 sees its link go down."""
        _run(["ip", "-n", self.switch, "link", "set", self.port(host), "down"])

    def link_up(self, host: str) -> None:
        _run(["ip", "-n", self.switch, "link", "set", self.port(host), "up"])

    def block(self, host: str) -> None:
        """Partition with carrier up: the bridge stops forwarding on the host's port."""
        _run(self._bridge(["link", "set", "dev", self.port(host), "state", "0"]))

    def unblock(self, host: str) -> None:
        _run(self._bridge(["link", "set", "dev", self.port(host), "state", "3"]))

    def mcast_off(self) -> None:
        for host in self.hosts:
            _run(self._bridge(["link", "set", "dev", self.port(host), "mcast_flood", "off"]))

    def _bridge(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.switch, "bridge", *args]

    def namespaces(self) -> Iterator[str]:
        yield from self._made
