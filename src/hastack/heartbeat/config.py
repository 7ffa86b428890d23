"""[heartbeat]: cluster membership, election timers, the floating IPs and their resource groups.

A config without ``[[heartbeat.groups]]`` has one group, ``default``, made of the top-level
``vips``, ``resources``, ``priority`` and ``auto_failback``. With ``[[heartbeat.groups]]`` each
entry is a group of its own (one haresources line: its own preferred node, VIPs and scripts);
membership, transport, keys, timers, quorum, ping targets and hooks stay shared.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from hastack.config import Address, ServiceConfig, setting
from hastack.heartbeat.proto import DEFAULT_GROUP

_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class ResourceConfig:
    """One haresources entry: an LSB-style script called with start|stop|status."""

    name: str = setting(help="label in logs and status")
    command: tuple[str, ...] = setting(
        help="argv; 'start', 'stop' or 'status' is appended (like Script::arg1::arg2)"
    )
    start_timeout: float = setting(30.0, min=0.1, help="a start taking longer counts as failed")
    stop_timeout: float = setting(30.0, min=0.1, help="a stop taking longer counts as failed")
    monitor_interval: float = setting(
        0.0, min=0.0, help="run `status` this often while started; failure moves the group; 0=off"
    )
    status_timeout: float = setting(10.0, min=0.1, help="a status check taking longer failed")


@dataclass(frozen=True, kw_only=True)
class GroupConfig:
    """One resource group (one haresources line): its VIPs and scripts, this node's priority."""

    name: str = setting(help="group name (letters, digits, _ . -); the same on every node")
    priority: int | None = setting(
        None, min=1, max=255,
        help="this node's priority for this group (highest is the preferred node); "
        "default: [heartbeat].priority",
    )
    vips: tuple[str, ...] = setting(
        (), help='this group\'s floating addresses "ip/prefix" or "ip/prefix/dev"'
    )
    resources: tuple[ResourceConfig, ...] = setting(
        (), help="[[heartbeat.groups.resources]]: started in order after the VIPs"
    )
    auto_failback: bool | None = setting(
        None, help="preempt for this group; default: [heartbeat].auto_failback"
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        if not _GROUP_NAME.match(self.name):
            yield ("name", "expected 1-64 letters, digits, '_', '.' or '-'")
        for vip in self.vips:
            try:
                parse_vip(vip, "eth0")
            except ValueError as exc:
                yield ("vips", str(exc))


@dataclass(frozen=True, kw_only=True)
class HeartbeatConfig(ServiceConfig):
    """[heartbeat]: leader election with a floating IP (Linux-HA Heartbeat, keepalived)."""

    node: str | None = setting(None, help="this node's name; default: [hastack].name")
    cluster: str = setting("hastack", help="cluster name; datagrams of other clusters are refused")
    nodes: tuple[str, ...] = setting(
        (), help="every member's name (ha.cf `node`); sets the quorum size; default: self only"
    )
    address: str = setting(
        "", help="this node's own IP: tie-breaker (highest wins); default: bind host"
    )
    priority: int = setting(100, min=1, max=255, help="higher wins (keepalived default 100)")
    bind: Address = setting(
        Address("0.0.0.0", 694), help="UDP listen address (Heartbeat udpport 694)"
    )
    unicast_peers: tuple[Address, ...] = setting(
        (), help="send heartbeats to each of these (ha.cf `ucast`; keepalived unicast_peer)"
    )
    multicast_group: Address | None = setting(
        None, help="also send to this group, port = bind port (ha.cf `mcast`, e.g. 239.0.0.1:694)"
    )
    multicast_interface: str | None = setting(None, help="interface address for multicast")
    multicast_ttl: int = setting(1, min=1, max=255, help="ha.cf mcast ttl (sample 1)")
    broadcast: Address | None = setting(
        None, help="also send to this broadcast address (ha.cf `bcast`), e.g. 10.0.0.255:694"
    )
    auth_keys: dict[str, str] = setting(
        default_factory=dict,
        help='key id (1-255) -> secret ("hex:..." for bytes), like authkeys; all are accepted',
    )
    auth_send_key: int = setting(1, min=1, max=255, help="key id used for sending (`auth N`)")
    auth_keys_file: Path | None = setting(
        None, help="Heartbeat authkeys file (mode 600; `auth N` + `N sha1 secret`) instead of "
        "auth_keys/auth_send_key"
    )
    keepalive_interval: float = setting(
        2.0, min=0.01, max=60, help="seconds between heartbeats (ha.cf keepalive; sample 2)"
    )
    warn_timeout: float = setting(
        10.0, min=0.01, help="log a late heartbeat after this silence (ha.cf warntime; sample 10)"
    )
    dead_timeout: float = setting(
        30.0, min=0.03, help="a silent peer is dead after this (ha.cf deadtime; sample 30)"
    )
    initdead_timeout: float = setting(
        120.0, min=0.0, help="at start, wait this long for all nodes (ha.cf initdead; sample 120)"
    )
    auto_failback: bool = setting(
        True, help="a returning higher-priority node takes the VIP back (keepalived preempt)"
    )
    quorum: bool = setting(
        False, help="only a node that holds a majority of votes may hold the VIP (split brain)"
    )
    replay_window_timeout: float = setting(
        30.0, min=0.1, help="refuse datagrams whose timestamp is further off than this"
    )
    vips: tuple[str, ...] = setting(
        (), help='floating addresses "ip/prefix" or "ip/prefix/dev" (haresources IPaddr)'
    )
    vip_interface: str = setting("eth0", help="device for VIPs that name none")
    garp_mode: Literal["request", "reply"] = setting(
        "request", help="gratuitous ARP form: request (arping -U, keepalived) or reply (arping -A)"
    )
    garp_count: int = setting(
        2, min=1, max=20, help="frames per announcement (keepalived garp_master_repeat 5)"
    )
    garp_repeat_intervals: tuple[float, ...] = setting(
        (0.5, 1.0, 5.0), help="re-announce this long after a takeover (keepalived: once at 5 s)"
    )
    garp_refresh_interval: float = setting(
        0.0, min=0.0, help="periodic GARP while master; 0 = off (keepalived garp_master_refresh)"
    )
    resources: tuple[ResourceConfig, ...] = setting(
        (), help="[[heartbeat.resources]]: started in order after the VIP, stopped in reverse"
    )
    groups: tuple[GroupConfig, ...] = setting(
        (), help="[[heartbeat.groups]]: several resource groups, each with its own preferred "
        "node (active/active); replaces the top-level vips/resources"
    )
    notify_command: tuple[str, ...] = setting(
        (), help="argv run on every transition with OLD NEW REASON appended (notify_master...)"
    )
    notify_timeout: float = setting(10.0, min=0.1, help="a notify hook is killed after this")
    fence_command: tuple[str, ...] = setting(
        (), help="argv run before taking over from a master that went silent (STONITH); "
        "$HASTACK_FENCE_NODE / $HASTACK_FENCE_ADDRESS name it; must exit 0"
    )
    fence_timeout: float = setting(10.0, min=0.1, help="a fence command taking longer failed")
    ping_targets: tuple[str, ...] = setting(
        (), help="IPs pinged (ICMP echo) to check our own connectivity (ha.cf `ping`, ipfail)"
    )
    ping_min_reachable: int = setting(1, min=1, help="fewer reachable targets -> FAULT")
    ping_interval: float = setting(1.0, min=0.01, help="seconds between ping rounds")
    ping_dead_timeout: float = setting(
        5.0, min=0.01, help="a target silent this long is unreachable (ha.cf deadping; sample 30)"
    )
    link_check: bool = setting(
        True, help="carrier loss on a VIP interface -> FAULT at once (keepalived does this)"
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        yield from super().validate()
        if not self.keepalive_interval < self.dead_timeout:
            yield ("dead_timeout", "must be longer than keepalive_interval")
        elif self.dead_timeout < 2 * self.keepalive_interval:
            yield ("dead_timeout", "should be at least 2 x keepalive_interval (3-4 x is usual)")
        if self.warn_timeout > self.dead_timeout:
            yield ("warn_timeout", "must not exceed dead_timeout")
        if self.auth_keys and self.auth_keys_file is not None:
            yield ("auth_keys_file", "give auth_keys or auth_keys_file, not both")
        if not self.auth_keys and self.auth_keys_file is None:
            yield ("auth_keys", "at least one key is required (datagrams are always signed)")
        for kid, secret in self.auth_keys.items():
            if not kid.isdigit() or not 1 <= int(kid) <= 255:
                yield ("auth_keys", f"key id {kid!r} must be a number 1-255")
            elif not secret:
                yield ("auth_keys", f"key {kid} is empty")
        if self.auth_keys and str(self.auth_send_key) not in self.auth_keys:
            yield ("auth_send_key", f"{self.auth_send_key} is not one of auth_keys")
        for vip in self.vips:
            try:
                parse_vip(vip, self.vip_interface)
            except ValueError as exc:
                yield ("vips", str(exc))
        if self.multicast_group is not None and self.multicast_group.port != self.bind.port:
            yield ("multicast_group", "port must equal the bind port")
        if self.ping_min_reachable > max(1, len(self.ping_targets)) and self.ping_targets:
            yield ("ping_min_reachable", "more than there are ping_targets")
        if self.node is not None and self.nodes and self.node not in self.nodes:
            yield ("nodes", f"does not list this node {self.node!r}")
        if self.quorum and len(self.nodes) < 3:
            yield ("quorum", "needs nodes = [...] with at least 3 members (2 cannot outvote 1)")
        if self.groups:
            for key in ("vips", "resources"):
                if getattr(self, key):
                    yield (key, "with [[heartbeat.groups]], give each group its own " + key)
        names: set[str] = set()
        owner: dict[str, str] = {}
        for i, group in enumerate(self.groups):
            if group.name in names:
                yield (f"groups[{i}].name", f"group {group.name!r} is defined twice")
            names.add(group.name)
            for vip in group.vips:
                try:
                    ip = parse_vip(vip, self.vip_interface)[0]
                except ValueError:
                    continue  # reported by the group itself
                if ip in owner and owner[ip] != group.name:
                    yield (f"groups[{i}].vips", f"{ip} is already in group {owner[ip]!r}")
                owner.setdefault(ip, group.name)

    def effective_groups(self) -> tuple[GroupConfig, ...]:
        """The groups this node runs, with priority and auto_failback filled in."""
        if not self.groups:
            return (GroupConfig(name=DEFAULT_GROUP, priority=self.priority, vips=self.vips,
                                resources=self.resources, auto_failback=self.auto_failback),)
        return tuple(
            replace(
                g,
                priority=self.priority if g.priority is None else g.priority,
                auto_failback=self.auto_failback if g.auto_failback is None else g.auto_failback,
            )
            for g in self.groups
        )


def parse_vip(text: str, default_dev: str) -> tuple[str, int, str]:
    """``"10.0.0.50/24/eth0"`` -> (ip, prefix, device)."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise ValueError(f"{text!r}: expected 'ip/prefix' or 'ip/prefix/dev'")
    try:
        ip = ipaddress.IPv4Address(parts[0])
    except ValueError:
        raise ValueError(f"{text!r}: {parts[0]!r} is not an IPv4 address") from None
    prefix = int(parts[1])
    if not 1 <= prefix <= 32:
        raise ValueError(f"{text!r}: prefix must be 1-32")
    return str(ip), prefix, parts[2] if len(parts) == 3 and parts[2] else default_dev
