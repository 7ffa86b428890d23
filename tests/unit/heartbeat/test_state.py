from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sim import Sim

from hastack.heartbeat.proto import Message
from hastack.heartbeat.state import (
    AddVip,
    Election,
    ElectionConfig,
    Notify,
    RemoveVip,
    RunFence,
    Send,
    SendGarp,
    StartResources,
    StopResources,
)

DEAD = 0.4
MARGIN = 0.05  # a few message delays (the simulated network adds at most 2 ms each)


def settle(sim: Sim, t: float = 2.0) -> None:
    sim.run_until(sim.now + t)


def takeover_time(sim: Sim, after: float) -> float:
    adds = [t for t, _, what in sim.timeline if what == "add" and t >= after]
    return adds[0] - after


def test_single_node_cluster() -> None:
    e = Election(ElectionConfig(node="a", keepalive=0.1, deadtime=0.4, quorum=True), boot=1)
    out = e.start(0.0)
    assert e.state == "backup"  # no peers to wait for
    assert not e.master and any(isinstance(a, Send) for a in out)
    out = e.tick(e.next_wakeup(0.0))
    t = 0.0
    while not e.master:
        t = e.next_wakeup(t)
        out = e.tick(t)
    assert t == pytest.approx(0.4)  # abstains for one deadtime after start
    kinds = [type(a) for a in out]
    assert kinds.index(AddVip) < kinds.index(SendGarp) < kinds.index(StartResources)
    assert Notify("backup", "master", "elected") in out
    out = e.stop(t + 1)
    kinds = [type(a) for a in out]
    assert kinds[:2] == [RemoveVip, StopResources]
    assert isinstance(out[-1], Send) and out[-1].message.type == "bye"
    assert e.tick(t + 2) == [] and e.next_wakeup(t + 2) == float("inf")


def test_garp_repeats_and_refresh() -> None:
    cfg = ElectionConfig(node="a", keepalive=0.1, deadtime=0.4, garp_refresh=2.0, quorum=True)
    e = Election(cfg, boot=1)
    e.start(0.0)
    garps: list[tuple[float, str]] = []
    t = 0.0
    while t < 5.0:
        t = e.next_wakeup(t)
        garps += [(round(t, 3), a.reason) for a in e.tick(t) if isinstance(a, SendGarp)]
    assert garps == [
        (0.4, "takeover"), (0.9, "repeat"), (1.4, "repeat"), (2.4, "refresh"),
        (4.4, "refresh"),
    ]


def test_cold_start_elects_highest_priority() -> None:
    sim = Sim(n=3)
    sim.start_all()
    settle(sim)
    assert sim.masters() == ["n1"] and sim.holders == {"n1"}
    states = {n: e.state for n, e in sim.nodes.items() if e}
    assert states == {"n1": "master", "n2": "backup", "n3": "backup"}


def test_tie_breaks_on_highest_address() -> None:
    sim = Sim(n=3, priorities={"n1": 100, "n2": 100, "n3": 100})
    sim.start_all()
    settle(sim)
    assert sim.masters() == ["n3"]  # 10.0.0.13


@pytest.mark.parametrize("quorum", [True, False])
def test_crash_failover_within_deadtime(quorum: bool) -> None:
    sim = Sim(n=3, quorum=quorum)
    sim.start_all()
    settle(sim)
    t0 = sim.now
    sim.crash("n1")
    settle(sim)
    assert sim.masters() == ["n2"]
    assert DEAD - 0.1 <= takeover_time(sim, t0) <= DEAD + MARGIN


def test_clean_stop_hands_over_at_once() -> None:
    sim = Sim(n=3)
    sim.start_all()
    settle(sim)
    t0 = sim.now
    sim.stop("n1")
    settle(sim)
    assert sim.masters() == ["n2"]
    assert takeover_time(sim, t0) < 0.02  # a few message delays, no timer


@pytest.mark.parametrize("failback", [True, False])
def test_old_master_returns(failback: bool) -> None:
    sim = Sim(n=3, auto_failback=failback)
    sim.start_all()
    settle(sim)
    sim.crash("n1")
    settle(sim)
    sim.start("n1")
    settle(sim, 3.0)
    assert sim.masters() == (["n1"] if failback else ["n2"])
    assert sim.max_holders == 1


def test_standby_and_takeover() -> None:
    sim = Sim(n=3, auto_failback=False)
    sim.start_all()
    settle(sim)
    n1 = sim.nodes["n1"]
    assert n1 is not None
    sim.apply("n1", n1.standby(sim.now))
    settle(sim)
    assert sim.masters() == ["n2"] and n1.state == "backup" and n1.standby_mode
    n3 = sim.nodes["n3"]
    assert n3 is not None
    sim.apply("n3", n3.takeover(sim.now))
    settle(sim)
    assert sim.masters() == ["n3"]
    sim.apply("n1", n1.takeover(sim.now))
    settle(sim)
    assert sim.masters() == ["n1"] and sim.max_holders == 1


def test_minority_master_steps_down_before_majority_takes_over() -> None:
    sim = Sim(n=3, quorum=True)
    sim.start_all()
    settle(sim)
    t0 = sim.now
    sim.partition({"n1"})
    settle(sim)
    assert sim.masters() == ["n2"]
    n1 = sim.nodes["n1"]
    assert n1 is not None and n1.state == "fault"
    dels = [t for t, n, w in sim.timeline if n == "n1" and w == "del" and t >= t0]
    adds = [t for t, n, w in sim.timeline if n == "n2" and w == "add" and t >= t0]
    assert dels[0] < adds[0] <= t0 + DEAD + MARGIN
    sim.heal()
    settle(sim)
    assert sim.masters() == ["n1"] and sim.max_holders == 1


def test_without_quorum_a_partition_gives_two_masters() -> None:
    # what keepalived does with a blocked bridge port: documents why quorum exists
    sim = Sim(n=3, quorum=False)
    sim.start_all()
    settle(sim)
    sim.partition({"n1"})
    settle(sim)
    assert sorted(sim.masters()) == ["n1", "n2"]
    sim.heal()
    settle(sim)
    assert sim.masters() == ["n1"]


def test_ping_fault_gives_up_the_address() -> None:
    sim = Sim(n=3)
    sim.start_all()
    settle(sim)
    n1 = sim.nodes["n1"]
    assert n1 is not None
    sim.apply("n1", n1.set_fault("ping", True, sim.now))
    settle(sim)
    assert sim.masters() == ["n2"] and n1.state == "fault"
    sim.apply("n1", n1.set_fault("ping", False, sim.now))
    settle(sim)
    assert sim.masters() == ["n1"]


def test_fencing_before_takeover_from_silent_master_only() -> None:
    sim = Sim(n=3, fencing=True, quorum=False)
    sim.start_all()
    settle(sim)
    fences: list[tuple[str, RunFence]] = []
    orig = sim.apply

    def spy(name: str, actions: list[object]) -> None:
        fences.extend((name, a) for a in actions if isinstance(a, RunFence))
        orig(name, actions)

    sim.apply = spy  # type: ignore[method-assign]
    sim.crash("n1")
    settle(sim)
    assert fences == [("n2", RunFence("n1", "10.0.0.11"))]
    assert sim.masters() == ["n2"]
    sim.stop("n2")  # resigns: no fencing needed
    settle(sim)
    assert sim.masters() == ["n3"] and len(fences) == 1


def test_resource_failure_moves_the_group() -> None:
    sim = Sim(n=3)
    sim.start_all()
    settle(sim)
    n1 = sim.nodes["n1"]
    assert n1 is not None
    sim.apply("n1", n1.resources_failed(sim.now))
    settle(sim)
    assert sim.masters() == ["n2"] and "resource" in n1.status(sim.now)["faults"]  # type: ignore[operator]


def test_late_heartbeat_warning_and_status() -> None:
    e = Election(ElectionConfig(node="a", nodes=("a", "b"), keepalive=0.1, warntime=0.2,
                                deadtime=0.4), boot=1)
    e.start(0.0)
    hb = Message(type="hb", cluster="hastack", node="b", boot=5, seq=1, timestamp=0.0,
                 priority=50, address="10.0.0.2", state="backup", eligible=True)
    e.receive(hb, 0.05)
    out = e.tick(0.3)
    assert [a.node for a in out if type(a).__name__ == "LateHeartbeat"] == ["b"]
    st_ = e.status(0.3)
    assert st_["peers"][0]["node"] == "b" and st_["peers"][0]["alive"]  # type: ignore[index]


def test_groups_are_independent_elections() -> None:
    """Two groups on two nodes, each preferring a different node (haresources active/active):
    each election hears only its own group's messages."""
    def node(name: str, group: str, priority: int) -> Election:
        cfg = ElectionConfig(node=name, nodes=("a", "b"), group=group, priority=priority,
                             address=f"10.0.0.{ord(name)}", keepalive=0.1, deadtime=0.4,
                             initdead=1.0)
        return Election(cfg, boot=1)

    elections = {("a", "g1"): node("a", "g1", 150), ("a", "g2"): node("a", "g2", 50),
                 ("b", "g1"): node("b", "g1", 100), ("b", "g2"): node("b", "g2", 200)}
    inbox: list[Message] = []
    t = 0.0
    for e in elections.values():
        inbox += [a.message for a in e.start(t) if isinstance(a, Send)]
    while t < 2.0:
        t = round(t + 0.01, 3)
        sent, inbox = inbox, []
        for m in sent:
            for e in elections.values():  # everyone gets everything (one socket per node)
                inbox += [a.message for a in e.receive(m, t) if isinstance(a, Send)]
        for e in elections.values():
            inbox += [a.message for a in e.tick(t) if isinstance(a, Send)]
    masters = sorted(k for k, e in elections.items() if e.master)
    assert masters == [("a", "g1"), ("b", "g2")]
    assert set(elections["a", "g1"].peers) == {"b"}
    assert elections["a", "g1"].peers["b"].msg.priority == 100  # b's g1 priority, not g2's
    assert elections["a", "g2"].peers["b"].msg.priority == 200
    # a stops: only g1 moves (b was already master of g2 and stays so, no transition)
    before = elections["b", "g2"].transitions
    for g in ("g1", "g2"):
        inbox += [a.message for a in elections["a", g].stop(t) if isinstance(a, Send)]
    for m in inbox:
        for e in (elections["b", "g1"], elections["b", "g2"]):
            e.receive(m, t)
    assert elections["b", "g1"].master and elections["b", "g2"].master
    assert elections["b", "g2"].transitions == before


# --- properties -------------------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.floats(0.05, 1.5),
        st.sampled_from(["crash", "restart", "stop", "partition", "heal", "standby", "takeover",
                         "ping"]),
        st.integers(1, 5),
        st.sets(st.integers(1, 5), max_size=4),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 5),
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
    max_delay=st.sampled_from([0.001, 0.02, 0.15]),
    failback=st.booleans(),
    schedule=events,
)
def test_at_most_one_holder_with_quorum(
    n: int, seed: int, loss: float, max_delay: float, failback: bool,
    schedule: list[tuple[float, str, int, set[int]]],
) -> None:
    """Any partitions (not only minority ones), loss, delays, crashes and restarts."""
    sim = Sim(n=n, quorum=True, auto_failback=failback, loss=loss, max_delay=max_delay,
              rng=random.Random(seed))
    sim.start_all()
    for delay, what, i, group in schedule:
        sim.run_until(sim.now + delay)
        name = f"n{(i - 1) % n + 1}"
        node = sim.nodes.get(name)
        if what == "crash":
            sim.crash(name)
        elif what == "restart" and node is None:
            sim.start(name)
        elif what == "stop":
            sim.stop(name)
        elif what == "partition":
            sim.partition({f"n{(g - 1) % n + 1}" for g in group})
        elif what == "heal":
            sim.heal()
        elif node is not None and what == "standby":
            sim.apply(name, node.standby(sim.now))
        elif node is not None and what == "takeover":
            sim.apply(name, node.takeover(sim.now))
        elif node is not None and what == "ping":
            sim.apply(name, node.set_fault("ping", "ping" not in node.faults, sim.now))
        assert sim.max_holders <= 1
    # heal everything: the cluster converges on exactly one master. Liveness (unlike safety)
    # needs the echo round trip plus one keepalive to fit in the lease (deadtime): with 150 ms
    # one-way delays and a 0.4 s deadtime a master keeps losing its lease, so heal delays too.
    sim.heal()
    sim.loss = 0.0
    sim.max_delay = 0.002
    for name in sim.names():
        node = sim.nodes.get(name)
        if node is None:
            sim.start(name)
        else:
            sim.apply(name, node.takeover(sim.now) if node.standby_mode else [])
            sim.apply(name, node.set_fault("ping", False, sim.now))
    sim.run_until(sim.now + 4.0)
    assert sim.max_holders <= 1
    assert len(sim.masters()) == 1
    assert sim.holders == set(sim.masters())


class ClusterMachine(RuleBasedStateMachine):
    """Model: the holder set always equals the set of nodes whose state machine says master,
    a master is never in FAULT, and with quorum there is at most one holder."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = Sim(n=3, quorum=True, loss=0.1, max_delay=0.01, rng=random.Random(7))
        self.sim.start_all()

    @rule(dt=st.floats(0.01, 1.0))
    def advance(self, dt: float) -> None:
        self.sim.run_until(self.sim.now + dt)

    @rule(i=st.integers(1, 3))
    def crash(self, i: int) -> None:
        self.sim.crash(f"n{i}")

    @rule(i=st.integers(1, 3))
    def restart(self, i: int) -> None:
        if self.sim.nodes.get(f"n{i}") is None:
            self.sim.start(f"n{i}")

    @rule(i=st.integers(1, 3))
    def isolate(self, i: int) -> None:
        self.sim.partition({f"n{i}"})

    @rule()
    def heal(self) -> None:
        self.sim.heal()

    @precondition(lambda self: True)
    @invariant()
    def consistent(self) -> None:
        masters = set(self.sim.masters())
        assert self.sim.holders == masters
        assert len(masters) <= 1
        for e in self.sim.nodes.values():
            if e is not None:
                assert e.master == (e.state == "master")


TestClusterMachine = ClusterMachine.TestCase
TestClusterMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)


def test_master_reannounces_when_a_lower_master_appears() -> None:
    # quorum off: a partition gives two masters; on healing the better one re-sends GARP
    # (so ARP caches that followed the other one come back) and the lower one yields
    sim = Sim(n=3, quorum=False)
    sim.start_all()
    settle(sim)
    sim.partition({"n1"})
    settle(sim)
    garps: list[tuple[str, str]] = []
    orig = sim.apply

    def spy(name: str, actions: list[object]) -> None:
        garps.extend((name, a.reason) for a in actions if isinstance(a, SendGarp))
        orig(name, actions)

    sim.apply = spy  # type: ignore[method-assign]
    sim.heal()
    settle(sim)
    assert any(n == "n1" and r in ("lower-priority master seen", "peer back") for n, r in garps)
    assert sim.masters() == ["n1"] and sim.holders == {"n1"}
