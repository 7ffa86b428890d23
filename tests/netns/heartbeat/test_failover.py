"""VIP failover on a real bridge: three nodes, a client requesting the VIP every 10 ms.

100 ms keepalive, 0.4 s deadtime, quorum on (3 nodes). Margins are generous: the machine is
shared; the point is correctness (one holder, the client follows), speed is in benchmarks/.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from hastack.heartbeat.testbed import HaCluster

pytestmark = [pytest.mark.netns, pytest.mark.slow]

MARGIN = 1.5  # seconds on top of the deadtime for "recovered" (process scheduling, GARP)


def bring_up(c: HaCluster) -> float:
    t0 = time.time()
    c.start()
    c.wait_master("n1")
    c.wait_served_by("n1", since=time.time())
    return t0


def check_failover(c: HaCluster, t_fault: float, old: str, new: str) -> None:
    c.wait_served_by(new, since=t_fault)
    assert c.probe is not None
    result = c.probe.failover(t_fault, old, new)
    assert result is not None
    gap, _fails = result
    assert gap <= c.deadtime + MARGIN, f"client recovered after {gap:.3f}s"
    assert c.holders() == [new]
    c.wait_for(lambda: c.arp_points_at(new), 5.0, f"client ARP entry -> {new}")


def test_kill9_master_withdrawn_by_supervisor_then_failback(cluster: HaCluster) -> None:
    c = cluster
    c.restart_delay = 1.0
    t0 = bring_up(c)
    t_fault = time.time()
    c.signal_daemon("n1", signal.SIGKILL)
    # the supervisor's crash_cleanup withdraws the dead daemon's address at once
    c.wait_for(lambda: "n1" not in c.holders(), 5.0, "crash cleanup on n1")
    check_failover(c, t_fault, "n1", "n2")
    # the supervisor restarts n1; with auto_failback it takes the VIP back
    t_back = time.time()
    c.wait_served_by("n1", since=t_back, timeout=30)
    c.wait_master("n1")
    c.wait_for(lambda: c.arp_points_at("n1"), 5.0, "client ARP entry -> n1")
    c.assert_one_holder(since=t0)


def test_link_cut_master_goes_fault_multicast(cluster: HaCluster) -> None:
    c = cluster
    c.transport = "multicast"
    t0 = bring_up(c)
    t_fault = time.time()
    c.bed.link_down("n1")
    check_failover(c, t_fault, "n1", "n2")
    c.bed.link_up("n1")
    c.wait_served_by("n1", since=time.time())  # auto_failback
    c.wait_master("n1")
    c.assert_one_holder(since=t0)


def test_sigstop_master_is_fenced_and_stays_backup_without_failback(cluster: HaCluster) -> None:
    c = cluster
    c.fence, c.auto_failback = True, False
    t0 = bring_up(c)
    t_fault = time.time()
    c.signal_daemon("n1", signal.SIGSTOP)
    # a frozen process cannot drop its address; the new master fences it first
    check_failover(c, t_fault, "n1", "n2")
    c.signal_daemon("n1", signal.SIGCONT)
    # n1 wakes up, finds its lease long gone and the VIP fenced away: it must stay backup
    c.wait_for(lambda: c.ha_status("n1").get("state") == "backup", 10, "n1 back as backup")
    st = c.ha_status("n2")
    assert st["state"] == "master" and st["holds_vip"]
    assert c.holders() == ["n2"]
    c.assert_one_holder(since=t0)


def test_clean_stop_hands_over_and_restart_without_failback_broadcast(
    cluster: HaCluster,
) -> None:
    c = cluster
    c.auto_failback, c.transport = False, "broadcast"
    t0 = bring_up(c)
    t_fault = time.time()
    assert c.stop_node("n1") == 0
    check_failover(c, t_fault, "n1", "n2")
    c.start_node("n1")

    def n1_settled() -> bool:
        st = c.ha_status("n1")
        return st.get("state") == "backup" and st.get("visible") == 3

    c.wait_for(n1_settled, 10, "n1 back as backup, seeing everyone")
    assert c.holders() == ["n2"]  # no failback: the interim master keeps it
    c.assert_one_holder(since=t0)


def test_partition_with_carrier_up_minority_master_steps_down(cluster: HaCluster) -> None:
    c = cluster
    c.extra = 'garp_mode = "reply"'  # arping -A form; the client must follow it as well
    t0 = bring_up(c)
    t_fault = time.time()
    c.bed.block("n1")  # the bridge drops n1's frames; n1's link stays up
    c.wait_for(lambda: c.holders() == ["n2"], 10, "n2 to take over")
    events = [e for e in c.vip_events() if e[0] >= t_fault]
    n1_del = next(t for t, n, d in events if n == "n1" and d < 0)
    n2_add = next(t for t, n, d in events if n == "n2" and d > 0)
    assert n1_del < n2_add  # the lease ran out before the majority took over
    check_failover(c, t_fault, "n1", "n2")
    c.bed.unblock("n1")
    c.wait_served_by("n1", since=time.time())
    c.wait_master("n1")
    c.assert_one_holder(since=t0)


def _isolate(c: HaCluster, host: str, on: bool) -> None:
    # isolated bridge ports cannot talk to each other, but still to every other port
    subprocess.run(
        ["ip", "netns", "exec", c.bed.switch, "bridge", "link", "set", "dev", c.bed.port(host),
         "isolated", "on" if on else "off"],
        check=True, capture_output=True, timeout=10,
    )


def test_ping_target_lost_gives_the_address_up(cluster: HaCluster) -> None:
    """ipfail: n1 can no longer reach its ping target (the client) but still its peers."""
    c = cluster
    c.extra = (
        f'ping_targets = ["{c.bed.ip("client")}"]\n'
        "ping_interval = 0.1\nping_dead_timeout = 0.5\n"
    )
    t0 = bring_up(c)
    try:
        t_fault = time.time()
        _isolate(c, "n1", True)
        _isolate(c, "client", True)
        c.wait_for(lambda: c.holders() == ["n2"], 10, "n2 to take over")
        c.wait_served_by("n2", since=t_fault)
        st = c.ha_status("n1")
        assert st.get("state") == "fault" and st.get("faults") == ["ping"], st
    finally:
        _isolate(c, "n1", False)
        _isolate(c, "client", False)
    c.wait_served_by("n1", since=time.time())  # reachable again: auto_failback
    c.assert_one_holder(since=t0)


def test_split_brain_without_quorum_heals_and_client_follows(cluster: HaCluster) -> None:
    """quorum off (what VRRP does): a blocked port gives two holders; on healing the lower one
    yields and the master re-announces, so the client's ARP cache comes back to it."""
    c = cluster
    c.quorum = False
    bring_up(c)
    c.bed.block("n1")
    c.wait_for(lambda: sorted(c.holders()) == ["n1", "n2"], 10, "two holders (no quorum)")
    c.wait_served_by("n2", since=time.time())  # n2's GARP pulled the client over
    c.bed.unblock("n1")
    c.wait_for(lambda: c.holders() == ["n1"], 10, "n2 to yield after healing")
    c.wait_for(lambda: c.arp_points_at("n1"), 5.0, "client ARP entry back at n1")
    c.wait_served_by("n1", since=time.time())


def test_two_groups_active_active_kill9_moves_only_its_vip(cluster: HaCluster) -> None:
    """haresources with two lines: VIP A prefers n1, VIP B prefers n2. kill -9 of n1's daemon
    (under the supervisor) moves only VIP A; VIP B never moves; A fails back to n1."""
    c = cluster
    c.groups = [
        ("web-a", 50, {"n1": 150, "n2": 100, "n3": 50}),
        ("web-b", 51, {"n1": 50, "n2": 150, "n3": 100}),
    ]
    vip_a, vip_b = c.vips
    assert vip_a == c.vip  # the client probe follows VIP A
    t0 = time.time()
    c.start()
    c.wait_master("n1", vip=vip_a)
    c.wait_master("n2", vip=vip_b)
    c.wait_served_by("n1", since=time.time())
    assert c.ask(vip_b) == "n2"

    # A node abstains from voting for one deadtime after its start: until n3 votes, n2's lease
    # on VIP B rests on n1's vote, and losing n1 then rightly drops B for a moment.
    def n3_votes() -> bool:
        groups = c.ha_status("n3").get("groups", [])
        return [(g["group"], g["vote"]) for g in groups] == [("web-a", "n1"), ("web-b", "n2")]

    c.wait_for(n3_votes, 10, "n3 voting in both groups")
    t_fault = time.time()
    c.signal_daemon("n1", signal.SIGKILL)
    c.wait_for(lambda: "n1" not in c.holders(vip_a), 5.0, "crash cleanup on n1")
    check_failover(c, t_fault, "n1", "n2")  # VIP A: n1 -> n2 (its next best)
    assert c.holders(vip_b) == ["n2"]
    # the supervisor restarts n1; auto_failback gives it VIP A back, VIP B stays on n2
    c.wait_served_by("n1", since=time.time(), timeout=30)
    c.wait_master("n1", vip=vip_a)
    assert c.holders(vip_b) == ["n2"] and c.ask(vip_b) == "n2"
    st = c.ha_status("n1")
    assert [(g["group"], g["state"]) for g in st["groups"]] == [
        ("web-a", "master"), ("web-b", "backup")], st
    for vip in (vip_a, vip_b):
        c.assert_one_holder(since=t0, vip=vip)
    # VIP B did not move (nor blink) at all since the fault
    assert [e for e in c.vip_events(vip_b) if e[0] >= t_fault] == []
