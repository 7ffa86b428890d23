"""A deterministic discrete-event simulation of N election state machines on a lossy network."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field, replace

from hastack.heartbeat.proto import Rejected, ReplayGuard
from hastack.heartbeat.state import (
    AddVip,
    Election,
    ElectionConfig,
    RemoveVip,
    RunFence,
    Send,
)


@dataclass
class Sim:
    n: int = 3
    quorum: bool = True
    auto_failback: bool = True
    loss: float = 0.0
    max_delay: float = 0.002
    keepalive: float = 0.1
    deadtime: float = 0.4
    fencing: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    now: float = 0.0
    nodes: dict[str, Election | None] = field(default_factory=dict)
    guards: dict[str, ReplayGuard] = field(default_factory=dict)
    holders: set[str] = field(default_factory=set)
    cut: set[frozenset[str]] = field(default_factory=set)  # pairs that cannot talk
    queue: list[tuple[float, int, str, object]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    wake_gen: dict[str, int] = field(default_factory=dict)
    max_holders: int = 0
    dual_time: float = 0.0
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    priorities: dict[str, int] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.n + 1)]

    def config(self, name: str) -> ElectionConfig:
        i = int(name[1:])
        return ElectionConfig(
            node=name,
            address=f"10.0.0.{10 + i}",
            priority=self.priorities.get(name, 100 + 10 * (self.n - i)),
            nodes=tuple(self.names()),
            keepalive=self.keepalive,
            warntime=self.deadtime * 0.75,
            deadtime=self.deadtime,
            initdead=self.deadtime * 2,
            auto_failback=self.auto_failback,
            quorum=self.quorum,
            fencing=self.fencing,
            lease_margin=self.keepalive / 10,
        )

    def push(self, at: float, kind: str, data: object) -> None:
        heapq.heappush(self.queue, (at, next(self.counter), kind, data))

    def start(self, name: str) -> None:
        node = Election(self.config(name), boot=int(self.now * 1e9) + 1)
        self.nodes[name] = node
        self.guards[name] = ReplayGuard(name)
        self.apply(name, node.start(self.now))

    def start_all(self) -> None:
        for name in self.names():
            self.start(name)

    def crash(self, name: str) -> None:
        # kill -9 plus the supervisor's crash_cleanup: the VIP goes at once
        self.nodes[name] = None
        self.wake_gen[name] = self.wake_gen.get(name, 0) + 1
        self._vip(name, False)

    def stop(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None:
            self.apply(name, node.stop(self.now))
            self.nodes[name] = None
            self.wake_gen[name] = self.wake_gen.get(name, 0) + 1

    def partition(self, group: set[str]) -> None:
        for a in group:
            for b in self.names():
                if b not in group:
                    self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    def _vip(self, name: str, on: bool) -> None:
        if on:
            self.holders.add(name)
        else:
            self.holders.discard(name)
        self.timeline.append((self.now, name, "add" if on else "del"))
        self.max_holders = max(self.max_holders, len(self.holders))

    def apply(self, name: str, actions: list[object]) -> None:
        node = self.nodes.get(name)
        for action in actions:
            if isinstance(action, Send):
                msg = replace(action.message, timestamp=self.now)
                for other in self.names():
                    if other == name or frozenset((name, other)) in self.cut:
                        continue
                    if self.rng.random() < self.loss:
                        continue
                    self.push(self.now + self.rng.uniform(0, self.max_delay), "msg", (other, msg))
            elif isinstance(action, AddVip):
                self._vip(name, True)
            elif isinstance(action, RemoveVip):
                self._vip(name, False)
            elif isinstance(action, RunFence):
                self.push(self.now + 0.01, "fenced", (name, action.node))
        if node is not None and self.nodes.get(name) is node:
            gen = self.wake_gen.get(name, 0) + 1
            self.wake_gen[name] = gen
            wake = node.next_wakeup(self.now)
            if math.isfinite(wake):
                self.push(wake, "tick", (name, gen))

    def run_until(self, t: float) -> None:
        while self.queue and self.queue[0][0] <= t:
            at, _, kind, data = heapq.heappop(self.queue)
            prev = self.now
            if len(self.holders) > 1:
                self.dual_time += at - prev
            self.now = at
            if kind == "tick":
                name, gen = data  # type: ignore[misc]
                node = self.nodes.get(name)
                if node is None or self.wake_gen.get(name) != gen:
                    continue
                self.apply(name, node.tick(self.now))
            elif kind == "msg":
                name, msg = data  # type: ignore[misc]
                node = self.nodes.get(name)
                if node is None or frozenset((name, msg.node)) in self.cut:
                    continue
                try:
                    self.guards[name].accept(msg, self.now)
                except Rejected:
                    continue
                self.apply(name, node.receive(msg, self.now))
            elif kind == "fenced":
                name, target = data  # type: ignore[misc]
                node = self.nodes.get(name)
                if node is None:
                    continue
                self._vip(target, False)
                self.apply(name, node.fence_done(target, True, self.now))
        if len(self.holders) > 1:
            self.dual_time += t - self.now
        self.now = t

    def masters(self) -> list[str]:
        return [n for n, e in self.nodes.items() if e is not None and e.master]
