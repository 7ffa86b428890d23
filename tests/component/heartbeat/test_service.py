"""Two and three heartbeat daemons in one process on loopback (no VIP: that needs netns)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hastack.config import HostConfig, config_from_dict
from hastack.core.admin import AdminServer
from hastack.heartbeat.config import HeartbeatConfig
from hastack.heartbeat.proto import Codec, Message
from hastack.heartbeat.server import HeartbeatService
from hastack.testing import free_port, running_service
from hastack.testing import wait_until as wait_for

KEYS = {"1": "old", "2": "new"}


def make_config(name: str, port: int, peers: list[int], **kw: Any) -> HeartbeatConfig:
    table: dict[str, Any] = {
        "node": name,
        "nodes": [f"n{i}" for i in range(1, len(peers) + 2)],
        "address": f"127.0.0.{int(name[1:])}",
        "bind": f"127.0.0.1:{port}",
        "unicast_peers": [f"127.0.0.1:{p}" for p in peers],
        "auth_keys": KEYS,
        "auth_send_key": 2,
        "keepalive_interval": 0.05,
        "warn_timeout": 0.2,
        "dead_timeout": 0.3,
        "initdead_timeout": 1.0,
        "priority": 200 - int(name[1:]),
        "link_check": False,
    }
    table.update(kw)
    return config_from_dict(HeartbeatConfig, table, table_name="heartbeat")


@contextlib.asynccontextmanager
async def cluster(
    n: int, tmp_path: Path, per_node: Callable[[str], dict[str, Any]] | None = None, **kw: Any
) -> AsyncIterator[list[HeartbeatService]]:
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(n)]
    async with contextlib.AsyncExitStack() as stack:
        services = []
        for i in range(n):
            name = f"n{i + 1}"
            own = {**kw, **(per_node(name) if per_node else {})}
            cfg = make_config(name, ports[i], [p for j, p in enumerate(ports) if j != i], **own)
            host = HostConfig(name=name, run_dir=tmp_path / name, data_dir=tmp_path / name)
            services.append(await stack.enter_async_context(running_service(HeartbeatService,
                                                                            cfg, host)))
        yield services


def masters(services: list[HeartbeatService]) -> list[str]:
    return [s.node_name for s in services if s.election.master and not s.stopping]


async def test_election_and_clean_handover(tmp_path: Path) -> None:
    async with cluster(3, tmp_path, quorum=True) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        assert all(s.election.state in ("master", "backup") for s in svcs)
        await svcs[0].stop()
        await wait_for(lambda: masters(svcs) == ["n2"])
        assert svcs[1].election.peers["n1"].gone  # it resigned


async def test_garbage_and_forged_datagrams_are_counted_and_ignored(tmp_path: Path) -> None:
    async with cluster(2, tmp_path) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        target = svcs[1].udp
        assert target is not None
        port = target.address.port
        forged = Codec({1: b"wrong"}, 1).encode(
            Message(type="hb", cluster="hastack", node="n9", boot=1, seq=1,
                    timestamp=time.time(), priority=255, state="master", claim=True)
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in (b"", b"garbage", b"HB\x01\x02" + b"x" * 40, forged):
                s.sendto(data, ("127.0.0.1", port))
        stats = svcs[1].stats
        await wait_for(lambda: stats.snapshot()["rejected_bad_mac"] >= 2)
        snap = stats.snapshot()
        assert snap["rejected_short"] >= 1
        assert "n9" not in svcs[1].election.peers
        assert masters(svcs) == ["n1"]


async def test_replayed_heartbeat_is_refused(tmp_path: Path) -> None:
    async with cluster(2, tmp_path) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        captured: list[bytes] = []
        orig = svcs[1].on_datagram

        def spy(data: bytes, addr: tuple[Any, int]) -> None:
            captured.append(data)
            orig(data, addr)

        svcs[1].on_datagram = spy  # type: ignore[method-assign]
        await wait_for(lambda: len(captured) >= 2)
        udp = svcs[1].udp
        assert udp is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(captured[0], ("127.0.0.1", udp.address.port))
        await wait_for(lambda: svcs[1].stats.snapshot()["rejected_replay"] >= 1)


async def test_key_rollover_between_nodes(tmp_path: Path) -> None:
    # n1 still sends with key 1, n2 already with key 2: both accept both
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
    a = make_config("n1", ports[0], [ports[1]], auth_send_key=1)
    b = make_config("n2", ports[1], [ports[0]], auth_send_key=2)
    async with (
        running_service(HeartbeatService, a) as s1,
        running_service(HeartbeatService, b) as s2,
    ):
        await wait_for(lambda: masters([s1, s2]) == ["n1"])
        assert s2.election.peers["n1"].msg.state == "master"
        assert s1.election.peers["n2"].msg.state == "backup"


async def test_admin_status_standby_takeover_and_hooks(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "res.sh"
    script.write_text(f'#!/bin/sh\necho "$HASTACK_NODE $0 $*" >> {log}\n')
    script.chmod(0o755)
    hooks = {
        "notify_command": [str(script), "notify"],
        "resources": [
            {"name": "a", "command": [str(script), "res-a"]},
            {"name": "b", "command": [str(script), "res-b"]},
        ],
    }
    async with cluster(2, tmp_path, auto_failback=False, **hooks) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        admin = AdminServer(svcs[0], make_config("n1", 0, []).admin_listen or _loopback())
        await admin.start()
        try:
            assert admin.address is not None
            base = f"http://{admin.address}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/ha/status") as r:
                    st = await r.json()
                assert st["state"] == "master" and st["holds_vip"] is True
                assert st["peers"][0]["node"] == "n2"
                async with http.post(f"{base}/ha/standby") as r:
                    assert r.status == 200
                await wait_for(lambda: masters(svcs) == ["n2"])
                async with http.post(f"{base}/ha/takeover") as r:
                    assert r.status == 200
                await wait_for(lambda: masters(svcs) == ["n1"])
        finally:
            await admin.stop()
        await wait_for(lambda: log.exists() and "backup master" in log.read_text())
        await svcs[0].groups["default"].work.join()
        lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()
                 if line.startswith("n1 ")]
        # resources start in order after the VIP and stop in reverse; notify on every
        # transition, after the group is up / down
        assert lines[:9] == [
            "notify init backup initialised",
            "res-a start",
            "res-b start",
            "notify backup master elected",
            "res-b stop",
            "res-a stop",
            "notify master backup standby",
            "res-a start",
            "res-b start",
        ], lines


def _loopback() -> Any:
    from hastack.config import Address

    return Address("127.0.0.1", 0)


async def test_failed_status_check_moves_the_group(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    script = tmp_path / "svc.sh"
    # status prints "not running" (exit 0, like old LSB scripts) once the flag file exists
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = status ] && [ -e {flag} ] && [ "$HASTACK_NODE" = n1 ]; then\n'
        '  echo "svc is not running"; fi\nexit 0\n'
    )
    script.chmod(0o755)
    res = [{"name": "svc", "command": [str(script)], "monitor_interval": 0.05}]
    async with cluster(2, tmp_path, resources=res) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        flag.touch()
        await wait_for(lambda: masters(svcs) == ["n2"])
        assert svcs[0].election.status(time.monotonic())["faults"] == ["resource"]
        assert svcs[0].stats.snapshot()["hook_failures"] >= 1


async def test_authkeys_file_mode_and_format(tmp_path: Path) -> None:
    keys = tmp_path / "authkeys"
    keys.write_text("auth 1\n1 sha1 secret\n")
    keys.chmod(0o644)
    port = free_port(socket.SOCK_DGRAM)
    cfg = make_config("n1", port, [], auth_keys={}, auth_keys_file=str(keys))
    service = HeartbeatService(cfg, HostConfig(name="n1", run_dir=tmp_path, data_dir=tmp_path))
    with pytest.raises(OSError, match="chmod 600"):
        await service.start()  # a world-readable authkeys file is refused
    keys.chmod(0o600)
    async with running_service(HeartbeatService, cfg) as svc:
        assert svc.codec is not None and svc.codec.keys == {1: b"secret"}


async def test_crash_cleanup_resigns_for_the_dead_daemon(tmp_path: Path) -> None:
    from hastack.heartbeat.server import crash_cleanup

    async with cluster(3, tmp_path, quorum=True) as svcs:
        await wait_for(lambda: masters(svcs) == ["n1"])
        dead = svcs[0]
        # "kill -9": n1 falls silent without resigning
        dead.election.stopped = True
        assert dead.udp is not None
        dead.udp.transport.close()
        await asyncio.to_thread(crash_cleanup, dead.cfg, dead.host)  # as the supervisor does
        await wait_for(lambda: masters(svcs[1:]) == ["n2"])
        assert svcs[1].election.peers["n1"].gone  # learned from the resign, not a timeout
        assert svcs[1].stats.snapshot()["rejected_replay"] == 0


# Two resource groups whose preferred nodes differ (haresources active/active):
# group "a" prefers n1 (then n2, n3), group "b" prefers n2 (then n3, n1).
GROUP_PRIORITIES = {"a": {"n1": 150, "n2": 100, "n3": 50}, "b": {"n1": 50, "n2": 150, "n3": 100}}


def two_groups(name: str) -> dict[str, Any]:
    return {"groups": [{"name": g, "priority": prio[name]}
                       for g, prio in GROUP_PRIORITIES.items()]}


def group_masters(services: list[HeartbeatService], group: str) -> list[str]:
    return [s.node_name for s in services
            if s.groups[group].election.master and not s.stopping]


async def test_two_groups_each_mastered_by_its_preferred_node(tmp_path: Path) -> None:
    async with cluster(3, tmp_path, per_node=two_groups, quorum=True) as svcs:
        await wait_for(lambda: group_masters(svcs, "a") == ["n1"]
                       and group_masters(svcs, "b") == ["n2"])
        # a node abstains for one deadtime after its start: once n3 votes, n2 keeps a majority
        # for "b" without n1 (before, losing n1's vote would rightly drop "b" for a moment)
        n3 = svcs[2].groups
        await wait_for(lambda: (n3["a"].election.vote, n3["b"].election.vote) == ("n1", "n2"))
        n2 = svcs[1]
        b_transitions = n2.groups["b"].election.transitions
        st = n2.status()
        assert [(g["group"], g["state"]) for g in st["groups"]] == [
            ("a", "backup"), ("b", "master")]
        assert st["group"] == "a" and st["state"] == "backup"  # top level: the first group
        # n1 stops cleanly: only group "a" moves (to n2, its next best); "b" does not flicker
        await svcs[0].stop()
        await wait_for(lambda: group_masters(svcs, "a") == ["n2"])
        assert group_masters(svcs, "b") == ["n2"]
        assert n2.groups["b"].election.transitions == b_transitions
        assert n2.groups["a"].election.peers["n1"].gone  # n1 resigned every group
        assert n2.groups["b"].election.peers["n1"].gone
        assert n2.stats.snapshot()["rejected_unknown_group"] == 0


async def test_group_standby_and_takeover_over_admin(tmp_path: Path) -> None:
    async with cluster(2, tmp_path, per_node=two_groups) as svcs:
        await wait_for(lambda: group_masters(svcs, "a") == ["n1"]
                       and group_masters(svcs, "b") == ["n2"])
        admin = AdminServer(svcs[1], _loopback())
        await admin.start()
        try:
            assert admin.address is not None
            base = f"http://{admin.address}"
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/ha/standby?group=nope") as r:
                    assert r.status == 404 and "groups: a, b" in (await r.json())["error"]
                async with http.post(f"{base}/ha/standby?group=b") as r:
                    assert r.status == 200
                await wait_for(lambda: group_masters(svcs, "b") == ["n1"])
                assert group_masters(svcs, "a") == ["n1"]
                assert svcs[1].groups["b"].election.standby_mode
                assert not svcs[1].groups["a"].election.standby_mode
                async with http.post(f"{base}/ha/takeover?group=b") as r:
                    assert r.status == 200
                await wait_for(lambda: group_masters(svcs, "b") == ["n2"])
                async with http.post(f"{base}/ha/standby") as r:  # every group
                    assert r.status == 200
                await wait_for(lambda: group_masters(svcs, "b") == ["n1"])
                async with http.get(f"{base}/health") as r:
                    assert (await r.json())["groups"] == {"a": "backup", "b": "backup"}
                assert group_masters(svcs, "a") == ["n1"]
        finally:
            await admin.stop()


async def test_datagrams_of_an_unknown_group_are_counted_and_ignored(tmp_path: Path) -> None:
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
    a = make_config("n1", ports[0], [ports[1]], **two_groups("n1"))
    b = make_config("n2", ports[1], [ports[0]])  # still the single default group
    async with (
        running_service(HeartbeatService, a) as s1,
        running_service(HeartbeatService, b) as s2,
    ):
        await wait_for(lambda: s1.stats.snapshot()["rejected_unknown_group"] >= 1
                       and s2.stats.snapshot()["rejected_unknown_group"] >= 2)
        assert s1.groups["a"].election.peers == {} and s2.election.peers == {}
