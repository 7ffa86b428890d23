"""The heartbeat daemon: UDP transports, the VIP, GARP, resource scripts, hooks.

A thin asyncio shell around ``state.Election``, one per resource group (``Group``; a config
without ``[[heartbeat.groups]]`` has just the ``default`` group). Datagrams are verified by
``proto.Codec`` and ``proto.ReplayGuard``, handed to their group's election with
``time.monotonic()``, and the actions that come back are carried out in order. VIP changes,
GARP frames and heartbeats happen synchronously inside that call (a netlink round trip is
~1 ms; a heartbeat must never report "not master" before the address is gone). Resource
scripts, notify hooks and fencing run one at a time in a worker task per group, so a slow
script never delays a heartbeat (or another group). Faults seen by the node (carrier, ping
targets) go to every group; a clean stop resigns them all.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import errno
import ipaddress
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from hastack.config import HostConfig, ServiceConfig
from hastack.core.net import UdpListener
from hastack.core.service import Service
from hastack.errors import ServiceError
from hastack.heartbeat import proto
from hastack.heartbeat.config import GroupConfig, HeartbeatConfig, ResourceConfig, parse_vip
from hastack.heartbeat.state import (
    Action,
    AddVip,
    Election,
    ElectionConfig,
    FaultReason,
    LateHeartbeat,
    Notify,
    RemoveVip,
    RunFence,
    Send,
    SendGarp,
    StartResources,
    StopResources,
    with_timestamp,
)

log = logging.getLogger("hastack.heartbeat")


# --- addresses (pyroute2, or `ip` when pyroute2 is missing) ----------------------------------


@dataclass(frozen=True)
class Vip:
    ip: str
    prefix: int
    dev: str

    @property
    def packed(self) -> bytes:
        return ipaddress.IPv4Address(self.ip).packed


class AddressManager:
    """Add/remove addresses; EEXIST on add and EADDRNOTAVAIL on delete are not errors.

    pyroute2 0.9's synchronous ``IPRoute`` drives its own asyncio loop and refuses to be built
    inside a running one, so it lives in one dedicated thread; each call is handed over and
    waited for (about 1 ms; ordering with heartbeats must stay strict, so this blocks on
    purpose). Without pyroute2, ``ip addr`` subprocesses do the same job (about 1.5 ms).
    """

    def __init__(self, use_pyroute2: bool = True) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._ipr: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if use_pyroute2:
            try:
                import pyroute2  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
            except ImportError:
                log.info("pyroute2 not installed: managing addresses with `ip`")
            else:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, "hastack-netlink")
        self._index: dict[str, int] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.submit(self._close_in_thread).result(timeout=10)
            self._pool.shutdown(wait=True)
            self._pool = None

    def _close_in_thread(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _netlink(self, op: str, vip: Vip) -> None:
        if self._ipr is None:
            from pyroute2 import IPRoute

            # A plain selector loop: uvloop (installed as the policy by hastack) cannot open
            # netlink sockets ("invalid family 16").
            self._loop = asyncio.SelectorEventLoop()
            self._ipr = IPRoute(use_event_loop=self._loop)
        if vip.dev not in self._index:
            self._index[vip.dev] = socket.if_nametoindex(vip.dev)
        self._ipr.addr(op, index=self._index[vip.dev], address=vip.ip, prefixlen=vip.prefix)

    def _call(self, op: str, vip: Vip, benign: tuple[int, ...]) -> bool:
        if self._pool is None:
            return self._ip(op, vip, "File exists" if op == "add" else "Cannot assign requested")
        try:
            self._pool.submit(self._netlink, op, vip).result(timeout=10)
        except OSError:
            raise
        except Exception as exc:  # pyroute2's NetlinkError carries the errno in .code
            if getattr(exc, "code", None) in benign:
                return False
            raise OSError(f"netlink {op} {vip.ip}/{vip.prefix} dev {vip.dev}: {exc}") from exc
        return True

    def add(self, vip: Vip) -> bool:
        """True if added now, False if it was already there."""
        return self._call("add", vip, (errno.EEXIST,))

    def remove(self, vip: Vip) -> bool:
        """True if removed now, False if it was not there."""
        return self._call("del", vip, (errno.EADDRNOTAVAIL, errno.ENODEV))

    def present(self, vip: Vip) -> bool:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", vip.dev],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout
        return f"inet {vip.ip}/" in out

    @staticmethod
    def _ip(op: str, vip: Vip, benign: str) -> bool:
        done = subprocess.run(
            ["ip", "addr", op, f"{vip.ip}/{vip.prefix}", "dev", vip.dev],
            capture_output=True, text=True, timeout=5, check=False,
        )
        if done.returncode == 0:
            return True
        if benign in done.stderr:
            return False
        raise OSError(f"ip addr {op} {vip.ip}/{vip.prefix} dev {vip.dev}: {done.stderr.strip()}")


def load_keys(cfg: HeartbeatConfig) -> tuple[int, dict[int, bytes]]:
    """(send key id, {id: secret}) from auth_keys or a Heartbeat authkeys file (mode 600)."""
    if cfg.auth_keys_file is None:
        keys = {int(k): proto.parse_key_spec(v) for k, v in cfg.auth_keys.items()}
        return cfg.auth_send_key, keys
    path = cfg.auth_keys_file
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ServiceError(f"{path}: cannot read authkeys: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ServiceError(f"{path}: authkeys must not be readable by others (chmod 600)")
    try:
        return proto.parse_authkeys(text)
    except ValueError as exc:
        raise ServiceError(f"{path}: {exc}") from None


def group_vips(cfg: HeartbeatConfig, group: GroupConfig) -> list[Vip]:
    return [Vip(*parse_vip(v, cfg.vip_interface)) for v in group.vips]


def configured_vips(cfg: HeartbeatConfig) -> list[Vip]:
    """Every group's VIPs."""
    return [vip for group in cfg.effective_groups() for vip in group_vips(cfg, group)]


def crash_cleanup(config: ServiceConfig, host: HostConfig) -> None:
    """Withdraw every group's VIPs of a daemon that died without its exit path (kill -9, OOM).

    The supervisor calls this after the process is gone and before restarting it: a dead
    daemon's address would otherwise stay up for good next to the new master's.
    """
    assert isinstance(config, HeartbeatConfig)
    host_name = host.name
    # one `ip addr del` (~2 ms) beats building a pyroute2 socket in a fresh thread (~100 ms)
    manager = AddressManager(use_pyroute2=shutil.which("ip") is None)
    try:
        for vip in configured_vips(config):
            if manager.remove(vip):
                log.warning("crash cleanup: withdrew %s/%s from %s", vip.ip, vip.prefix, vip.dev)
    finally:
        manager.close()
    # The address is gone, so resign on the dead daemon's behalf: peers take over in
    # milliseconds instead of waiting dead_timeout (and need not fence a node that holds
    # nothing). A fresh boot id keeps the replay guards happy; the restarted daemon's boot id
    # will be larger still.
    try:
        send_resign(config, config.node or host_name)
    except (OSError, ServiceError, ValueError) as exc:
        log.error("crash cleanup: cannot send the resign message: %s", exc)


def send_resign(cfg: HeartbeatConfig, node: str) -> int:
    """Send a signed ``bye`` of every group for ``node`` to every destination; returns the count."""
    send_key, keys = load_keys(cfg)
    codec = proto.Codec(keys, send_key, cluster=cfg.cluster)
    boot = time.time_ns()
    datagrams = [
        codec.encode(proto.Message(
            type="bye", cluster=cfg.cluster, node=node, boot=boot, seq=1, timestamp=time.time(),
            priority=group.priority or cfg.priority, address=cfg.address, state="backup",
            group=group.name,
        ))
        for group in cfg.effective_groups()
    ]
    dests = [(a.host, a.port) for a in cfg.unicast_peers]
    if cfg.multicast_group is not None:
        dests.append((cfg.multicast_group.host, cfg.multicast_group.port))
    if cfg.broadcast is not None:
        dests.append((cfg.broadcast.host, cfg.broadcast.port))
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if cfg.broadcast is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if cfg.multicast_group is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, cfg.multicast_ttl)
            if cfg.multicast_interface:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                socket.inet_aton(cfg.multicast_interface))
        for dest in dests:
            for data in datagrams:
                try:
                    sock.sendto(data, dest)
                    sent += 1
                except OSError as exc:
                    log.debug("resign to %s failed: %s", dest, exc)
    return sent


# --- gratuitous ARP ------------------------------------------------------------------------


class Announcer:
    """Pre-opened AF_PACKET sockets, one per VIP device (re-binding costs 10-20 ms)."""

    def __init__(self, devices: Sequence[str], reply: bool, count: int) -> None:
        self.reply = reply
        self.count = count
        self.socks: dict[str, tuple[socket.socket, bytes]] = {}
        for dev in devices:
            if dev in self.socks:
                continue
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto.ETH_P_ARP))
            try:
                sock.bind((dev, proto.ETH_P_ARP))
                sock.setblocking(False)
                mac = sock.getsockname()[4][:6]
            except OSError:
                sock.close()
                raise
            self.socks[dev] = (sock, mac)

    def announce(self, vip: Vip) -> int:
        sock, mac = self.socks[vip.dev]
        frame = proto.garp_frame(mac, vip.packed, reply=self.reply)
        sent = 0
        for _ in range(self.count):
            try:
                sock.send(frame)
                sent += 1
            except OSError as exc:  # ENETDOWN while the link is down: nothing to announce to
                log.debug("GARP for %s on %s failed: %s", vip.ip, vip.dev, exc)
        return sent

    def close(self) -> None:
        for sock, _ in self.socks.values():
            sock.close()
        self.socks.clear()


# --- UDP transport -------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResources:
    """Worker job: run ``status`` of the started resources that are due (monitor_interval)."""


_NOT_RUNNING = re.compile(r"\b(not running|stopped|dead)\b", re.IGNORECASE)


@dataclass(eq=False)
class Group:
    """One resource group on this node: its election, VIPs, started scripts and worker queue."""

    cfg: GroupConfig
    election: Election
    vips: list[Vip]
    vip_held: bool = False
    work: asyncio.Queue[Action | CheckResources] = field(default_factory=asyncio.Queue)
    started_resources: list[ResourceConfig] = field(default_factory=list)
    last_status: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # recent transitions
    label: str = ""  # "[name] " in log lines when the node runs several groups

    @property
    def name(self) -> str:
        return self.cfg.name


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, service: HeartbeatService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.service.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.service.send_errors.value += 1


# --- the service ---------------------------------------------------------------------------


class HeartbeatService(Service):
    name = "heartbeat"

    def __init__(self, config: ServiceConfig, host: HostConfig | None = None) -> None:
        super().__init__(config, host)
        assert isinstance(config, HeartbeatConfig)
        self.cfg = config
        self.node_name = config.node or self.host.name
        address = config.address or (config.bind.host if config.bind.host != "0.0.0.0" else "")
        nodes = config.nodes or (self.node_name,)
        self.election_cfg = ElectionConfig(
            node=self.node_name,
            address=address,
            priority=config.priority,
            nodes=tuple(nodes),
            cluster=config.cluster,
            keepalive=config.keepalive_interval,
            warntime=config.warn_timeout,
            deadtime=config.dead_timeout,
            initdead=config.initdead_timeout,
            auto_failback=config.auto_failback,
            quorum=config.quorum,
            fencing=bool(config.fence_command),
            lease_margin=min(config.keepalive_interval / 4, 0.05),
            garp_repeats=config.garp_repeat_intervals,
            garp_refresh=config.garp_refresh_interval,
        )
        self.codec: proto.Codec | None = None  # built in start(): reading keys may fail
        self.guard = proto.ReplayGuard(self.node_name, max_clock_skew=config.replay_window_timeout)
        boot = time.time_ns()
        self.groups: dict[str, Group] = {}
        for gc in config.effective_groups():
            ecfg = replace(
                self.election_cfg,
                group=gc.name,
                priority=config.priority if gc.priority is None else gc.priority,
                auto_failback=(
                    config.auto_failback if gc.auto_failback is None else gc.auto_failback
                ),
            )
            self.groups[gc.name] = Group(
                gc, Election(ecfg, boot=boot), group_vips(config, gc),
                label=f"[{gc.name}] " if config.groups else "",
            )
        self.vips = [vip for g in self.groups.values() for vip in g.vips]
        self.addrs: AddressManager | None = None
        self.announcer: Announcer | None = None
        self.udp: UdpListener | None = None
        self.destinations: list[tuple[str, int]] = [(a.host, a.port) for a in config.unicast_peers]
        if config.multicast_group is not None:
            self.destinations.append((config.multicast_group.host, config.multicast_group.port))
        if config.broadcast is not None:
            self.destinations.append((config.broadcast.host, config.broadcast.port))
        self._wake = asyncio.Event()
        self._atexit: Callable[[], None] | None = None
        s = self.stats
        self.received = s.counter("datagrams_received", help="heartbeats accepted")
        self.sent = s.counter("datagrams_sent", help="datagrams sent (all destinations)")
        self.send_errors = s.counter("send_errors", help="sendto failures (peer unreachable...)")
        self.own = s.counter("own_datagrams", help="our own multicast/broadcast looped back")
        self.rejected = {
            r: s.counter(f"rejected_{r}", help=f"datagrams ignored: {r}")
            for r in proto.REJECT_REASONS
            if r != proto.R_SELF
        }
        self.garps = s.counter("garp_frames_sent", help="gratuitous ARP frames sent")
        self.vip_adds = s.counter("vip_adds", help="VIP addresses added")
        self.vip_removes = s.counter("vip_removes", help="VIP addresses removed")
        self.late = s.counter("late_heartbeats", help="peer silences longer than warn_timeout")
        self.hook_failures = s.counter("hook_failures", help="resource/notify/fence failures")
        s.gauge("is_master", lambda: int(any(g.election.master for g in self.groups.values())),
                help="1 while holding a group's VIP")
        s.gauge("groups_master", lambda: sum(g.election.master for g in self.groups.values()),
                help="resource groups this node is master of")
        s.gauge("transitions", lambda: sum(g.election.transitions for g in self.groups.values()),
                help="state changes (all groups)")
        s.gauge("peers_alive", lambda: self.election.visible(time.monotonic()) - 1, help="")

    @property
    def election(self) -> Election:
        """The first group's election (the only one in a config without groups)."""
        return next(iter(self.groups.values())).election

    @property
    def vip_held(self) -> bool:
        return any(g.vip_held for g in self.groups.values())

    @property
    def started_resources(self) -> list[ResourceConfig]:
        return [r for g in self.groups.values() for r in g.started_resources]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            send_key, keys = load_keys(self.cfg)
        except ServiceError as exc:
            # hastack.core.lifecycle reports OSError from start() as "cannot start: ..." and
            # exit 2; a ServiceError would escape as a traceback.
            raise OSError(str(exc)) from exc
        self.codec = proto.Codec(keys, send_key, cluster=self.cfg.cluster)
        try:
            self.addrs = AddressManager()
            self._withdraw_all("leftover at start-up")
            self._atexit = self._withdraw_at_exit
            atexit.register(self._atexit)
            if self.vips:
                self.announcer = Announcer(
                    [v.dev for v in self.vips], self.cfg.garp_mode == "reply", self.cfg.garp_count
                )
            await self._open_udp()
            now = time.monotonic()
            for group in self.groups.values():
                self._apply(group, group.election.start(now))
                self.spawn(self._worker(group), name=f"resources-{group.name}")
            self.spawn(self._ticker(), name="ticker")
            if self.cfg.ping_targets:
                self.spawn(self._pinger(), name="ping")
            if any(r.monitor_interval > 0 for g in self.groups.values() for r in g.cfg.resources):
                self.spawn(self._monitor(), name="monitor")
            if self.cfg.link_check and self.vips:
                self.spawn(self._link_watch(), name="link")
        except BaseException:
            self._withdraw_all("start failed")
            self._release()
            raise
        self.log.info(
            "node %s: %d peers configured, quorum %s, groups %s",
            self.node_name, len(self.election_cfg.nodes) - 1, "on" if self.cfg.quorum else "off",
            "; ".join(
                f"{g.name} (priority {g.election.cfg.priority}, VIPs "
                + (",".join(f"{v.ip}/{v.prefix}/{v.dev}" for v in g.vips) or "-") + ")"
                for g in self.groups.values()
            ),
        )

    async def _open_udp(self) -> None:
        cfg = self.cfg
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if cfg.broadcast is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((cfg.bind.host, cfg.bind.port))
            if cfg.multicast_group is not None:
                iface = socket.inet_aton(cfg.multicast_interface or "0.0.0.0")
                mreq = socket.inet_aton(cfg.multicast_group.host) + iface
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, cfg.multicast_ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                if cfg.multicast_interface:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
            # heartbeats are latency-critical control traffic
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), sock=sock
        )
        # Not in self.udp_listeners: Service.stop() closes those before drain(), and drain()
        # still has to send the resign message.
        self.udp = UdpListener(transport, protocol, "heartbeat")

    async def drain(self) -> None:
        """Clean stop: every group gives up its VIPs, resigns (peers take over at once) and
        stops its resources."""
        for group in self.groups.values():
            if not group.election.stopped:
                self._apply(group, group.election.stop(time.monotonic()))
        for group in self.groups.values():
            await group.work.join()

    async def close(self) -> None:
        self._withdraw_all("stopping")
        self._release()

    def _release(self) -> None:
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        if self.announcer is not None:
            self.announcer.close()
            self.announcer = None
        if self.addrs is not None:
            self.addrs.close()
            self.addrs = None

    def _withdraw_at_exit(self) -> None:
        if any(g.vip_held or g.election.master for g in self.groups.values()):
            self._withdraw_all("process exit")

    def _withdraw_all(self, why: str) -> None:
        manager = self.addrs or AddressManager()
        try:
            for vip in self.vips:
                try:
                    if manager.remove(vip):
                        self.vip_removes.value += 1
                        self.log.warning("removed %s/%s from %s (%s)", vip.ip, vip.prefix,
                                         vip.dev, why)
                except OSError as exc:
                    self.log.error("cannot remove %s: %s", vip.ip, exc)
        finally:
            if manager is not self.addrs:
                manager.close()
        for group in self.groups.values():
            group.vip_held = False

    # -- input ----------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[Any, int]) -> None:
        if self.codec is None:
            return
        try:
            msg = self.codec.decode(data)
            self.guard.accept(msg, time.time())
        except proto.Rejected as exc:
            if exc.reason == proto.R_SELF:
                self.own.value += 1
                return
            self.rejected[exc.reason].value += 1
            self.log.debug("ignored datagram from %s: %s", addr[0], exc)
            return
        group = self.groups.get(msg.group)
        if group is None:
            self.rejected[proto.R_GROUP].value += 1
            self.log.debug("ignored datagram from %s: unknown group %r", addr[0], msg.group)
            return
        self.received.value += 1
        self._apply(group, group.election.receive(msg, time.monotonic()))

    async def _ticker(self) -> None:
        groups = list(self.groups.values())
        while True:
            now = time.monotonic()
            for group in groups:
                self._apply(group, group.election.tick(now))
            wake = min(g.election.next_wakeup(now) for g in groups)
            delay = max(0.0, min(wake - time.monotonic(), 1.0))
            self._wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # races with the event being set (which drain() does right before cancelling us).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if all(g.election.stopped for g in groups):
                return

    # -- actions --------------------------------------------------------------------------

    def _apply(self, group: Group, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, AddVip):
                self._add_vips(group)
            elif isinstance(action, RemoveVip):
                self._remove_vips(group)
            elif isinstance(action, SendGarp):
                self._garp(group, action.reason)
            elif isinstance(action, LateHeartbeat):
                self.late.value += 1
                self.log.warning("%slate heartbeat from %s: %.0f ms of silence",
                                 group.label, action.node, action.silence * 1000)
            elif isinstance(action, Notify):
                self.log.info("%s%s -> %s (%s)", group.label, action.old, action.new,
                              action.reason)
                group.history.append({"time": time.time(), "old": action.old,
                                      "new": action.new, "reason": action.reason})
                del group.history[:-20]
                if self.cfg.notify_command:
                    group.work.put_nowait(action)
            else:  # StartResources, StopResources, RunFence
                group.work.put_nowait(action)
        self._wake.set()

    def _fault(self, reason: FaultReason, active: bool, now: float) -> None:
        """A node-wide fault (carrier, ping targets) applies to every group."""
        for group in self.groups.values():
            self._apply(group, group.election.set_fault(reason, active, now))

    def _send(self, action: Send) -> None:
        if self.udp is None or self.codec is None:
            return
        data = self.codec.encode(with_timestamp(action.message, time.time()))
        for dest in self.destinations:
            try:
                self.udp.transport.sendto(data, dest)
                self.sent.value += 1
            except OSError:
                self.send_errors.value += 1

    def _add_vips(self, group: Group) -> None:
        assert self.addrs is not None
        for vip in group.vips:
            try:
                if self.addrs.add(vip):
                    self.vip_adds.value += 1
            except OSError as exc:
                self.log.error("cannot add %s: %s", vip.ip, exc)
        group.vip_held = True
        self.log.info("%stook over %s", group.label,
                      ", ".join(v.ip for v in group.vips) or "(no VIP)")

    def _remove_vips(self, group: Group) -> None:
        assert self.addrs is not None
        for vip in group.vips:
            try:
                if self.addrs.remove(vip):
                    self.vip_removes.value += 1
            except OSError as exc:
                self.log.error("cannot remove %s: %s", vip.ip, exc)
        group.vip_held = False
        self.log.info("%sreleased %s", group.label,
                      ", ".join(v.ip for v in group.vips) or "(no VIP)")

    def _garp(self, group: Group, reason: str) -> None:
        if self.announcer is None:
            return
        for vip in group.vips:
            self.garps.value += self.announcer.announce(vip)
        self.log.debug("%sgratuitous ARP (%s)", group.label, reason)

    # -- resources, hooks, fencing (one at a time per group, in order) ----------------------

    async def _worker(self, group: Group) -> None:
        while True:
            action = await group.work.get()
            try:
                await self._run_action(group, action)
            finally:
                group.work.task_done()

    async def _monitor(self) -> None:
        step = min(r.monitor_interval for g in self.groups.values() for r in g.cfg.resources
                   if r.monitor_interval > 0)
        while True:
            await asyncio.sleep(step)
            for group in self.groups.values():
                if group.election.master and group.started_resources and group.work.empty():
                    group.work.put_nowait(CheckResources())

    async def _run_action(self, group: Group, action: Action | CheckResources) -> None:
        now = time.monotonic
        env = {"HASTACK_GROUP": group.name}
        if isinstance(action, CheckResources):
            for res in list(group.started_resources):
                due = group.last_status.get(res.name, 0.0) + res.monitor_interval
                if res.monitor_interval <= 0 or now() < due:
                    continue
                group.last_status[res.name] = now()
                ok = await self._script(res.command, "status", res.status_timeout, res.name, env,
                                        judge_text=True)
                if not ok and res in group.started_resources:
                    self.log.error("%sresource %s failed its status check: giving the group up",
                                   group.label, res.name)
                    self._apply(group, group.election.resources_failed(now()))
                    return
        elif isinstance(action, StartResources):
            for res in group.cfg.resources:
                ok = await self._script(res.command, "start", res.start_timeout, res.name, env)
                if not ok:
                    self.log.error("%sresource %s failed to start: giving the group up",
                                   group.label, res.name)
                    self._apply(group, group.election.resources_failed(now()))
                    return
                group.started_resources.append(res)
        elif isinstance(action, StopResources):
            failed = False
            for res in reversed(group.started_resources):
                if not await self._script(res.command, "stop", res.stop_timeout, res.name, env):
                    failed = True
                    self.log.error("%sresource %s failed to stop", group.label, res.name)
            group.started_resources.clear()
            if failed:
                # Heartbeat reboots here; we sit out so the group cannot run twice.
                self._apply(group, group.election.resources_failed(now()))
        elif isinstance(action, RunFence):
            env.update(HASTACK_FENCE_NODE=action.node, HASTACK_FENCE_ADDRESS=action.address)
            self.log.warning("%sfencing %s (%s) before taking over", group.label, action.node,
                             action.address)
            ok = await self._script(self.cfg.fence_command, None, self.cfg.fence_timeout,
                                    "fence", env)
            self._apply(group, group.election.fence_done(action.node, ok, now()))
        elif isinstance(action, Notify):
            env.update(HASTACK_STATE=action.new, HASTACK_NODE=self.node_name)
            await self._script(
                (*self.cfg.notify_command, action.old, action.new, action.reason),
                None, self.cfg.notify_timeout, "notify", env,
            )

    async def _script(
        self,
        argv: Sequence[str],
        verb: str | None,
        timeout: float,
        label: str,
        env: dict[str, str] | None = None,
        *,
        judge_text: bool = False,
    ) -> bool:
        full = [*argv, verb] if verb else list(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={
                    **os.environ,
                    "HASTACK_CLUSTER": self.cfg.cluster,
                    "HASTACK_NODE": self.node_name,
                    **(env or {}),
                },
            )
        except OSError as exc:
            self.hook_failures.value += 1
            self.log.error("%s: cannot run %s: %s", label, full[0], exc)
            return False
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self.hook_failures.value += 1
            self.log.error("%s %s: timed out after %.1fs", label, verb or "", timeout)
            return False
        text = out.decode(errors="replace").strip()
        if judge_text and proc.returncode == 0 and _NOT_RUNNING.search(text):
            # LSB status scripts of Heartbeat's era print "not running" and exit 0
            self.hook_failures.value += 1
            self.log.error("%s %s: %s", label, verb or "", text[-500:])
            return False
        if proc.returncode != 0:
            self.hook_failures.value += 1
            self.log.error("%s %s: exit %s: %s", label, verb or "", proc.returncode, text[-500:])
            return False
        if verb != "status":
            self.log.info("%s %s: ok%s", label, verb or "", f": {text[-200:]}" if text else "")
        return True

    # -- connectivity checks --------------------------------------------------------------

    async def _link_watch(self) -> None:
        devices = sorted({v.dev for v in self.vips})
        down = False
        while True:
            now_down = any(not _carrier(dev) for dev in devices)
            if now_down != down:
                down = now_down
                self.log.warning("carrier %s on %s", "lost" if down else "back", ",".join(devices))
                self._fault("link", down, time.monotonic())
            await asyncio.sleep(min(self.cfg.keepalive_interval, 0.1))

    async def _pinger(self) -> None:
        cfg = self.cfg
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        except OSError:  # ping_group_range excludes us: raw socket (root)
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        last_reply: dict[str, float] = {t: time.monotonic() for t in cfg.ping_targets}
        ident = os.getpid() & 0xFFFF
        seq = 0
        faulty = False

        def on_readable() -> None:
            while True:
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                if proto.parse_icmp_echo_reply(data) is not None and addr[0] in last_reply:
                    last_reply[addr[0]] = time.monotonic()

        loop.add_reader(sock.fileno(), on_readable)
        try:
            while True:
                seq = (seq + 1) & 0xFFFF
                for target in cfg.ping_targets:
                    with contextlib.suppress(OSError):
                        sock.sendto(proto.icmp_echo_request(ident, seq), (target, 0))
                await asyncio.sleep(cfg.ping_interval)
                now = time.monotonic()
                reachable = sum(1 for t in last_reply.values() if now - t < cfg.ping_dead_timeout)
                now_faulty = reachable < cfg.ping_min_reachable
                if now_faulty != faulty:
                    faulty = now_faulty
                    self.log.warning("ping targets reachable: %d of %d", reachable,
                                     len(cfg.ping_targets))
                    self._fault("ping", faulty, now)
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    # -- status and admin -----------------------------------------------------------------

    def addresses(self) -> dict[str, str]:
        out = super().addresses()
        if self.udp is not None:
            out["heartbeat"] = str(self.udp.address)
        return out

    def group_status(self, group: Group, now: float) -> dict[str, Any]:
        st = group.election.status(now)
        st["vips"] = [f"{v.ip}/{v.prefix}/{v.dev}" for v in group.vips]
        st["holds_vip"] = group.vip_held
        st["history"] = list(group.history)
        st["resources"] = [r.name for r in group.started_resources]
        return st

    def status(self) -> dict[str, Any]:
        """The first group's status at the top level (all of it for a config without groups),
        and every group's under ``groups``."""
        now = time.monotonic()
        groups = [self.group_status(g, now) for g in self.groups.values()]
        st = dict(groups[0])
        st["groups"] = groups
        st["keepalive_interval"] = self.cfg.keepalive_interval
        st["dead_timeout"] = self.cfg.dead_timeout
        return st

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        states = {name: g.election.status(now)["state"] for name, g in self.groups.items()}
        first = self.election
        return "fault" not in states.values(), {
            "state": first.state, "master": first.master, "groups": states,
        }

    def select_groups(self, name: str | None) -> list[Group]:
        """The named group, or all groups when ``name`` is None; KeyError if unknown."""
        if name is None:
            return list(self.groups.values())
        return [self.groups[name]]

    def admin_routes(self) -> list[web.RouteDef]:
        async def get_status(request: web.Request) -> web.Response:
            return web.json_response(self.status())

        def command(method: str) -> Callable[[web.Request], Any]:
            async def handler(request: web.Request) -> web.Response:
                name = request.query.get("group")
                try:
                    groups = self.select_groups(name)
                except KeyError:
                    return web.json_response(
                        {"error": f"no group {name!r}; groups: {', '.join(self.groups)}"},
                        status=404,
                    )
                for group in groups:
                    self._apply(group, getattr(group.election, method)(time.monotonic()))
                return web.json_response(self.status())

            return handler

        return [
            web.get("/ha/status", get_status),
            web.post("/ha/standby", command("standby")),
            web.post("/ha/takeover", command("takeover")),
        ]


def _carrier(dev: str) -> bool:
    try:
        with open(f"/sys/class/net/{dev}/carrier") as f:
            return f.read().strip() == "1"
    except OSError:  # device gone, or down (reading carrier of a down device is EINVAL)
        return False

