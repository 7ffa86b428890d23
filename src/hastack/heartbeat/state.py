"""Pure election state machine: one node's view of the cluster. Time is always an argument.

Inputs: ``start``, ``receive(msg)``, ``tick``, ``set_fault``, ``standby``, ``takeover``,
``stop``, ``fence_done``, ``resources_failed``. Each returns a list of actions for the shell
to carry out *in order* (``AddVip``, ``RemoveVip``, ``SendGarp``, ``StartResources``,
``StopResources``, ``RunFence``, ``Notify``, ``Send``, ``LateHeartbeat``).
``next_wakeup()`` says when ``tick`` must be called next.

Election (Heartbeat timers, VRRP-like ranking):

* Every node sends a heartbeat each ``keepalive`` (and at once on any change). A peer is dead
  after ``deadtime`` of silence, or at once when it sends ``bye`` (resign on clean stop).
* Rank = (takeover request, priority, address); the highest ranked eligible node *claims* the
  master role. With ``auto_failback`` off, nobody claims while a live master exists.
* A master yields (removes the VIP first, then says so) when a higher ranked node claims.

Quorum as leases (when ``quorum`` is on): each node *votes* for one claiming node and echoes
the last (boot, seq) it heard from it. A voter only moves its vote when its candidate stopped
claiming, or after ``deadtime`` of silence from it. The candidate counts a vote as valid until
``send time of the echoed seq + deadtime - lease_margin`` (its own clock, no clock sync), and
is master only while a majority of the configured nodes' votes are valid. Two masters would
need one voter counted by both: impossible while the voter's promise holds. A freshly started
node abstains for one ``deadtime`` (its previous life may have promised a vote). A master that
stops getting a majority (partitioned into the minority) drops the VIP when the lease ends,
before the majority side can take over. What leases cannot cover is a master whose process is
frozen (SIGSTOP, VM pause): the kernel keeps its address; that is what the fencing hook is for.

Resource groups (haresources' several lines, e.g. active/active): one ``Election`` per group,
each with its own priority and VIPs; ``cfg.group`` is stamped on every message and messages of
other groups are ignored, so the groups' elections never see each other's claims or votes.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

from hastack.heartbeat.proto import DEFAULT_GROUP, Message, NodeState

INIT: NodeState = "init"
BACKUP: NodeState = "backup"
MASTER: NodeState = "master"
FAULT: NodeState = "fault"

FaultReason = Literal["ping", "quorum", "resource", "link"]


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    message: Message  # timestamp is filled in by the shell (wall clock) before encoding


@dataclass(frozen=True, slots=True)
class AddVip:
    pass


@dataclass(frozen=True, slots=True)
class RemoveVip:
    pass


@dataclass(frozen=True, slots=True)
class SendGarp:
    reason: str = "takeover"


@dataclass(frozen=True, slots=True)
class StartResources:
    pass


@dataclass(frozen=True, slots=True)
class StopResources:
    pass


@dataclass(frozen=True, slots=True)
class RunFence:
    node: str
    address: str


@dataclass(frozen=True, slots=True)
class Notify:
    old: NodeState
    new: NodeState
    reason: str


@dataclass(frozen=True, slots=True)
class LateHeartbeat:
    node: str
    silence: float


Action = (
    Send | AddVip | RemoveVip | SendGarp | StartResources | StopResources | RunFence | Notify
    | LateHeartbeat
)


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ElectionConfig:
    node: str
    address: str = ""  # this node's own address: the tie-breaker (highest wins)
    priority: int = 100  # keepalived's default priority
    nodes: tuple[str, ...] = ()  # every configured node name, including this one
    cluster: str = "hastack"
    group: str = DEFAULT_GROUP  # the resource group this election decides
    keepalive: float = 2.0  # Heartbeat sample ha.cf: keepalive 2
    warntime: float = 10.0  # sample: warntime 10
    deadtime: float = 30.0  # sample: deadtime 30
    initdead: float = 120.0  # sample: initdead 120 (>= 2 x deadtime)
    auto_failback: bool = True  # keepalived's default is preempt
    quorum: bool = False
    fencing: bool = False  # run a fence command before taking over from a silent master
    # Masters drop the VIP this long before their lease ends (clock rate drift, scheduling).
    lease_margin: float = 0.0
    # GARP repeats after a takeover (keepalived: 5 at once + 5 after garp_master_delay 5 s).
    garp_repeats: tuple[float, ...] = (0.5, 1.0, 5.0)
    garp_refresh: float = 0.0  # periodic GARP while master (keepalived garp_master_refresh); 0=off
    failure_holddown: float = 30.0  # how long a node sits out after its resources failed to start

    def __post_init__(self) -> None:
        if self.node not in self.nodes:
            object.__setattr__(self, "nodes", (self.node, *self.nodes))
        if not 0 < self.keepalive < self.deadtime:
            raise ValueError("need 0 < keepalive < deadtime")
        if self.lease_margin < 0 or self.lease_margin >= self.deadtime - self.keepalive:
            raise ValueError("lease_margin must be in [0, deadtime - keepalive)")

    @property
    def majority(self) -> int:
        return len(self.nodes) // 2 + 1


def address_key(addr: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return (0, 0, addr)
    return (ip.version, int(ip), addr)


@dataclass
class Peer:
    name: str
    boot: int
    msg: Message
    last_heard: float
    first_heard: float
    gone: bool = False  # sent bye
    warned: bool = False
    was_master: bool = False  # its last word was "master" (fence it if it goes silent)
    fenced: bool = False


@dataclass
class _Sent:
    seq: int
    at: float


@dataclass
class Election:
    cfg: ElectionConfig
    boot: int
    started: float = math.nan
    state: NodeState = INIT
    master: bool = False  # holds the VIP
    claim: bool = False
    vote: str | None = None
    want: bool = False
    standby_mode: bool = False
    stopped: bool = False
    faults: set[str] = field(default_factory=set)
    resource_failed_until: float = -math.inf
    peers: dict[str, Peer] = field(default_factory=dict)
    seq: int = 0
    claim_seq: int = 0
    sent: deque[_Sent] = field(default_factory=deque)
    next_send: float = -math.inf
    lease_until: float = -math.inf
    garp_at: list[float] = field(default_factory=list)
    next_refresh: float = math.inf
    last_reactive_garp: float = -math.inf
    fence_pending: str | None = None
    fence_retry_at: float = -math.inf
    master_since: float = math.nan
    transitions: int = 0
    _eligible_flag: bool = False

    # -- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self.started = now
        out: list[Action] = []
        self._evaluate(now, out, force_send=True)
        return out

    def receive(self, msg: Message, now: float) -> list[Action]:
        """A verified, non-replayed message from a peer (see proto.Codec / ReplayGuard)."""
        if self.stopped or msg.node == self.cfg.node or msg.group != self.cfg.group:
            return []
        out: list[Action] = []
        peer = self.peers.get(msg.node)
        rejoined = peer is None or not self.alive(peer, now)
        if peer is None or msg.boot != peer.boot:
            peer = Peer(msg.node, msg.boot, msg, now, now)
            self.peers[msg.node] = peer
        else:
            silence = now - peer.last_heard
            if silence > self.cfg.warntime and not peer.gone:
                out.append(LateHeartbeat(msg.node, silence))
        peer.msg = msg
        peer.last_heard = now
        peer.warned = False
        peer.gone = msg.type == "bye"
        peer.was_master = msg.state == MASTER and not peer.gone
        if msg.state == MASTER:
            peer.fenced = False
            # Someone else became master after them: that node dealt with older masters.
            for other in self.peers.values():
                if other is not peer:
                    other.was_master = False
        lower_master = msg.state == MASTER and self._rank_of(msg) < self._own_rank()
        if (
            self.master
            and (lower_master or (rejoined and not peer.gone))
            and now - self.last_reactive_garp >= self.cfg.keepalive
        ):
            # A lower-ranked node thinks it is master, or a node we could not hear is back
            # (it may have been master on its side of a partition and pulled the ARP caches
            # over, then yielded before we heard it): re-announce so caches point here.
            # keepalived 2.2.7 does the first; the second closes the rest of #160/#166.
            self.last_reactive_garp = now
            out.append(SendGarp("lower-priority master seen" if lower_master else "peer back"))
        self._evaluate(now, out)
        return out

    def tick(self, now: float) -> list[Action]:
        if self.stopped:
            return []
        out: list[Action] = []
        for peer in self.peers.values():
            silence = now - peer.last_heard
            if not peer.gone and not peer.warned and silence > self.cfg.warntime:
                peer.warned = True
                out.append(LateHeartbeat(peer.name, silence))
        self._evaluate(now, out)
        return out

    def set_fault(self, reason: FaultReason, active: bool, now: float) -> list[Action]:
        """Ping targets unreachable / carrier lost (``active``) or recovered."""
        if active:
            self.faults.add(reason)
        else:
            self.faults.discard(reason)
        out: list[Action] = []
        self._evaluate(now, out)
        return out

    def standby(self, now: float) -> list[Action]:
        """hb_standby: give the resources away and stay out until ``takeover``."""
        self.standby_mode = True
        self.want = False
        out: list[Action] = []
        self._evaluate(now, out, force_send=True)
        return out

    def takeover(self, now: float) -> list[Action]:
        """hb_takeover: leave standby and ask the current master to hand over."""
        self.standby_mode = False
        self.resource_failed_until = -math.inf
        self.faults.discard("resource")
        self.want = not self.master
        out: list[Action] = []
        self._evaluate(now, out, force_send=True)
        return out

    def stop(self, now: float) -> list[Action]:
        """Clean stop: release everything and resign so a peer takes over at once."""
        out: list[Action] = []
        if self.master:
            self._step_down(out)
        self.claim = False
        self._set_state(BACKUP, "stopping", out)
        self.vote = None
        self.stopped = True
        out.append(Send(self._message(now, "bye")))
        return out

    def fence_done(self, node: str, ok: bool, now: float) -> list[Action]:
        if self.fence_pending != node:
            return []
        self.fence_pending = None
        peer = self.peers.get(node)
        if ok and peer is not None:
            peer.fenced = True
        elif not ok:
            self.fence_retry_at = now + self.cfg.keepalive
        out: list[Action] = []
        self._evaluate(now, out)
        return out

    def resources_failed(self, now: float) -> list[Action]:
        """Starting the resource group failed: step down and sit out ``failure_holddown``."""
        self.resource_failed_until = now + self.cfg.failure_holddown
        out: list[Action] = []
        self._evaluate(now, out)
        return out

    # -- queries --------------------------------------------------------------------------

    def next_wakeup(self, now: float) -> float:
        """The earliest future moment at which ``tick`` has something to do."""
        if self.stopped:
            return math.inf
        times = [self.next_send, self.started + self.cfg.deadtime]
        if self.state == INIT:
            times.append(self.started + self.cfg.initdead)
        for peer in self.peers.values():
            if not peer.gone:
                times.append(peer.last_heard + self.cfg.deadtime)
                if not peer.warned:
                    times.append(peer.last_heard + self.cfg.warntime)
        if self.master:
            if self.cfg.quorum:
                times.append(self.lease_until)
            times.extend(self.garp_at)
            times.append(self.next_refresh)
        if self.fence_retry_at > -math.inf:
            times.append(self.fence_retry_at)
        if self.resource_failed_until > -math.inf:
            times.append(self.resource_failed_until)
        return min((t for t in times if t > now), default=math.inf)

    def alive(self, peer: Peer, now: float) -> bool:
        return not peer.gone and now - peer.last_heard < self.cfg.deadtime

    def visible(self, now: float) -> int:
        configured = set(self.cfg.nodes)
        return 1 + sum(
            1 for p in self.peers.values() if p.name in configured and self.alive(p, now)
        )

    def status(self, now: float) -> dict[str, object]:
        return {
            "node": self.cfg.node,
            "group": self.cfg.group,
            "state": self.state,
            "priority": self.cfg.priority,
            "address": self.cfg.address,
            "master": self.master,
            "claim": self.claim,
            "vote": self.vote,
            "standby": self.standby_mode,
            "faults": sorted(self._fault_reasons(now)),
            "quorum": self.cfg.quorum,
            "visible": self.visible(now),
            "configured": len(self.cfg.nodes),
            "lease_left": (
                max(0.0, self.lease_until - now) if self.master and self.cfg.quorum else None
            ),
            "transitions": self.transitions,
            "peers": [
                {
                    "node": p.name,
                    "state": "gone" if p.gone else p.msg.state,
                    "priority": p.msg.priority,
                    "address": p.msg.address,
                    "alive": self.alive(p, now),
                    "age": now - p.last_heard,
                    "master": p.msg.state == MASTER and self.alive(p, now),
                    "vote": p.msg.vote,
                }
                for p in sorted(self.peers.values(), key=lambda p: p.name)
            ],
        }

    # -- internals ------------------------------------------------------------------------

    def _own_rank(self) -> tuple[bool, int, tuple[int, int, str]]:
        return (self.want, self.cfg.priority, address_key(self.cfg.address))

    @staticmethod
    def _rank_of(msg: Message) -> tuple[bool, int, tuple[int, int, str]]:
        return (msg.want, msg.priority, address_key(msg.address))

    def _fault_reasons(self, now: float) -> set[str]:
        reasons = set(self.faults)
        if self.cfg.quorum and self.visible(now) < self.cfg.majority:
            reasons.add("quorum")
        if now < self.resource_failed_until:
            reasons.add("resource")
        return reasons

    def _message(self, now: float, mtype: Literal["hb", "bye"] = "hb") -> Message:
        self.seq += 1
        self.sent.append(_Sent(self.seq, now))
        horizon = now - self.cfg.deadtime
        while self.sent and self.sent[0].at < horizon:
            self.sent.popleft()
        vote_boot = vote_seq = 0
        if self.vote is not None and self.vote != self.cfg.node:
            peer = self.peers.get(self.vote)
            if peer is not None:
                vote_boot, vote_seq = peer.boot, peer.msg.seq
        elif self.vote == self.cfg.node:
            vote_boot, vote_seq = self.boot, self.seq
        return Message(
            type=mtype,
            cluster=self.cfg.cluster,
            node=self.cfg.node,
            boot=self.boot,
            seq=self.seq,
            timestamp=0.0,
            priority=self.cfg.priority,
            address=self.cfg.address,
            state=self.state,
            eligible=self._eligible_flag,
            claim=self.claim,
            want=self.want,
            vote=self.vote if mtype == "hb" else None,
            vote_boot=vote_boot,
            vote_seq=vote_seq,
            group=self.cfg.group,
        )

    def _sent_at(self, seq: int) -> float | None:
        # sent is ordered by seq; a linear scan over < deadtime/keepalive entries
        for s in reversed(self.sent):
            if s.seq == seq:
                return s.at
            if s.seq < seq:
                return None
        return None

    def _lease(self, now: float) -> float:
        """Until when a majority of votes for this node stays valid (-inf if none)."""
        expiries: list[float] = []
        if self.vote == self.cfg.node:
            expiries.append(math.inf)
        configured = set(self.cfg.nodes)
        for p in self.peers.values():
            m = p.msg
            if (
                p.gone
                or p.name not in configured
                or m.vote != self.cfg.node
                or m.vote_boot != self.boot
                or m.vote_seq < self.claim_seq
            ):
                continue
            at = self._sent_at(m.vote_seq)
            if at is None:
                continue
            expiries.append(at + self.cfg.deadtime - self.cfg.lease_margin)
        if len(expiries) < self.cfg.majority:
            return -math.inf
        expiries.sort(reverse=True)
        return expiries[self.cfg.majority - 1]

    def _step_down(self, out: list[Action]) -> None:
        # The VIP goes first in both cases: it is what the lease protects. Resource scripts
        # follow (stopped in reverse order by the shell).
        self.master = False
        self.lease_until = -math.inf
        self.garp_at = []
        self.next_refresh = math.inf
        out.append(RemoveVip())
        out.append(StopResources())

    def _set_state(self, new: NodeState, reason: str, out: list[Action]) -> None:
        if new != self.state:
            out.append(Notify(self.state, new, reason))
            self.state = new
            self.transitions += 1

    def _evaluate(self, now: float, out: list[Action], force_send: bool = False) -> None:
        cfg = self.cfg
        before = (self.state, self.claim, self.vote, self.master, self._eligible_flag)
        # INIT: wait until every configured node was heard, or initdead passed.
        if self.state == INIT:
            heard = all(n == cfg.node or n in self.peers for n in cfg.nodes)
            if heard or now - self.started >= cfg.initdead:
                self._set_state(BACKUP, "initialised", out)
        faults = self._fault_reasons(now)
        eligible = self.state != INIT and not self.standby_mode and not faults
        self._eligible_flag = eligible
        alive = [p for p in self.peers.values() if self.alive(p, now)]
        own = self._own_rank()

        # 1. should this node claim the master role?
        # A master yields to a better master (split brain healing), and to a better claimer
        # only when preempting is allowed (auto_failback) or asked for (takeover).
        must_yield = any(
            self._rank_of(p.msg) > own
            and (
                p.msg.state == MASTER
                or (p.msg.claim and (cfg.auto_failback or p.msg.want))
            )
            for p in alive
        )
        if not eligible:
            claim = False
        elif self.master:
            claim = not must_yield
        else:
            other_master = any(p.msg.state == MASTER for p in alive)
            if other_master and not (cfg.auto_failback or self.want):
                claim = False
            else:
                claim = all(
                    self._rank_of(p.msg) < own
                    for p in alive
                    if p.msg.eligible and p.msg.state != INIT
                )
        if claim and not self.claim:
            self.claim_seq = self.seq + 1  # votes must echo this claim or later
        self.claim = claim

        # 2. step down if no longer claiming or (quorum) the lease ran out
        if self.master:
            if not claim:
                self._step_down(out)
            elif cfg.quorum:
                self.lease_until = self._lease(now)
                if self.lease_until <= now:
                    self._step_down(out)

        # 3. vote
        self._update_vote(now, alive)

        # 4. become master
        if claim and not self.master and self.fence_pending is None:
            if cfg.quorum:
                lease = self._lease(now)
                ready = lease > now
            else:
                lease = -math.inf
                ready = not any(p.msg.state == MASTER for p in alive)
            if ready and cfg.fencing:
                suspect = next(
                    (
                        p
                        for p in self.peers.values()
                        if p.was_master and not p.fenced and not self.alive(p, now)
                    ),
                    None,
                )
                if suspect is not None:
                    ready = False
                    if now >= self.fence_retry_at:
                        self.fence_pending = suspect.name
                        self.fence_retry_at = -math.inf
                        out.append(RunFence(suspect.name, suspect.msg.address))
            if ready:
                self.master = True
                self.master_since = now
                self.lease_until = lease
                self.want = False
                self.garp_at = sorted(now + d for d in cfg.garp_repeats)
                self.next_refresh = now + cfg.garp_refresh if cfg.garp_refresh > 0 else math.inf
                out.append(AddVip())
                out.append(SendGarp("takeover"))
                out.append(StartResources())

        # 5. state
        if self.state != INIT:
            if self.master:
                self._set_state(MASTER, "elected", out)
            elif faults:
                self._set_state(FAULT, ",".join(sorted(faults)), out)
            else:
                self._set_state(BACKUP, "standby" if self.standby_mode else "not elected", out)

        # 6. GARP repeats
        if self.master:
            due = [t for t in self.garp_at if t <= now]
            if due:
                self.garp_at = [t for t in self.garp_at if t > now]
                out.append(SendGarp("repeat"))
            if now >= self.next_refresh:
                self.next_refresh = now + cfg.garp_refresh
                out.append(SendGarp("refresh"))

        # 7. heartbeat
        after = (self.state, self.claim, self.vote, self.master, self._eligible_flag)
        if force_send or after != before or now >= self.next_send:
            out.append(Send(self._message(now)))
            self.next_send = now + cfg.keepalive

    def _update_vote(self, now: float, alive: list[Peer]) -> None:
        target = self.vote
        if target == self.cfg.node:
            keep = self.claim or self.master
        elif target is not None:
            peer = self.peers.get(target)
            keep = (
                peer is not None
                and self.alive(peer, now)
                and (peer.msg.claim or peer.msg.state == MASTER)
            )
        else:
            keep = False
        if keep:
            return
        if now - self.started < self.cfg.deadtime:
            # A previous life of this node may have promised its vote to someone until
            # (at most) one deadtime after it was last heard: sit this one out.
            self.vote = None
            return
        candidates: list[tuple[tuple[bool, int, tuple[int, int, str]], str]] = [
            (self._rank_of(p.msg), p.name) for p in alive if p.msg.claim
        ]
        if self.claim:
            candidates.append((self._own_rank(), self.cfg.node))
        self.vote = max(candidates)[1] if candidates else None


def with_timestamp(msg: Message, timestamp: float) -> Message:
    return replace(msg, timestamp=timestamp)
