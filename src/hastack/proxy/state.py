"""Pure balancing and health state; time is always an argument, never read here.

``BackendState`` holds one backend's health (active-check hysteresis, passive ejection, slow
start, admin drain) and counters; ``PoolState`` picks a backend per request (round robin,
least connections, smooth weighted round robin as in nginx) with optional cookie affinity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Literal

Balance = Literal["round_robin", "least_conn", "weighted"]


def affinity_id(key: str) -> str:
    """Stable cookie value naming a backend (does not reveal its address)."""
    return hashlib.sha1(key.encode()).hexdigest()[:12]


class BackendState:
    __slots__ = (
        "active",
        "bad",
        "cid",
        "current_weight",
        "draining",
        "ejected_until",
        "errors",
        "failures",
        "good",
        "key",
        "latency_max",
        "latency_sum",
        "max_connections",
        "requests",
        "responses",
        "up",
        "up_since",
        "weight",
    )

    def __init__(self, key: str, weight: int = 1, max_connections: int = 0) -> None:
        self.key = key
        self.cid = affinity_id(key)
        self.weight = weight
        self.max_connections = max_connections
        self.up = True  # HAProxy also starts servers up and lets checks take them down
        self.draining = False
        self.active = 0
        self.good = 0
        self.bad = 0
        self.errors = 0
        self.ejected_until = 0.0
        self.up_since = float("-inf")  # no slow start for the initial members
        self.current_weight = 0.0
        self.requests = 0
        self.failures = 0
        self.responses: dict[str, int] = {}
        self.latency_sum = 0.0
        self.latency_max = 0.0

    # -- health -----------------------------------------------------------------------------

    def available(self, now: float) -> bool:
        return self.up and not self.draining and now >= self.ejected_until

    def has_slot(self) -> bool:
        return self.max_connections <= 0 or self.active < self.max_connections

    def state_name(self, now: float) -> str:
        if self.draining:
            return "draining"
        if not self.up:
            return "down"
        if now < self.ejected_until:
            return "ejected"
        return "up"

    def effective_weight(self, now: float, slow_start: float) -> float:
        if slow_start > 0 and now - self.up_since < slow_start:
            frac = max(0.0, (now - self.up_since) / slow_start)
            return max(self.weight * frac, min(self.weight, 0.05))
        return float(self.weight)

    def check_result(self, ok: bool, now: float, rise: int, fall: int) -> bool:
        """Record an active check; return True when the up/down state changed."""
        if ok:
            self.bad = 0
            self.good += 1
            if not self.up and self.good >= rise:
                self.up = True
                self.up_since = now
                self.errors = 0
                self.ejected_until = 0.0
                return True
        else:
            self.good = 0
            self.bad += 1
            if self.up and self.bad >= fall:
                self.up = False
                return True
        return False

    def connect_failed(self, now: float, eject_interval: float) -> None:
        """A refused/timed-out connect: eject at once (nginx max_fails=1 fail_timeout)."""
        self.failures += 1
        self.errors += 1
        self.ejected_until = now + eject_interval
        self.good = 0

    def response_error(self, now: float, error_limit: int, eject_interval: float) -> bool:
        """A 5xx or a response timeout; return True when this burst ejects the backend."""
        self.failures += 1
        self.errors += 1
        if self.errors >= error_limit:
            self.errors = 0
            self.ejected_until = now + eject_interval
            return True
        return False

    def response_ok(self, now: float) -> None:
        self.errors = 0
        if self.ejected_until and now >= self.ejected_until:
            # Back after ejection: ramp up again.
            self.ejected_until = 0.0
            self.up_since = now

    def record(self, status: int, latency: float) -> None:
        self.requests += 1
        cls = f"{status // 100}xx"
        self.responses[cls] = self.responses.get(cls, 0) + 1
        self.latency_sum += latency
        if latency > self.latency_max:
            self.latency_max = latency


class PoolState:
    """The backends of one pool and the per-request pick."""

    def __init__(self, balance: Balance = "round_robin", slow_start: float = 0.0) -> None:
        self.balance: Balance = balance
        self.slow_start = slow_start
        self.backends: list[BackendState] = []
        self._rr = 0

    def add(self, backend: BackendState) -> None:
        self.backends.append(backend)

    def remove(self, key: str) -> BackendState | None:
        for i, b in enumerate(self.backends):
            if b.key == key:
                del self.backends[i]
                return b
        return None

    def get(self, key: str) -> BackendState | None:
        for b in self.backends:
            if b.key == key:
                return b
        return None

    def any_available(self, now: float, exclude: Collection[str] = ()) -> bool:
        return any(b.available(now) and b.key not in exclude for b in self.backends)

    def pick(
        self, now: float, exclude: Collection[str] = (), affinity: str | None = None
    ) -> BackendState | None:
        """A backend that is available and has a free slot, or None."""
        cands = [
            b
            for b in self.backends
            if b.available(now) and b.has_slot() and b.key not in exclude and b.weight > 0
        ]
        if not cands:
            # Spares (weight 0) only when nothing else can serve.
            cands = [
                b
                for b in self.backends
                if b.available(now) and b.has_slot() and b.key not in exclude
            ]
            if not cands:
                return None
        if affinity is not None:
            for b in cands:
                if b.cid == affinity:
                    return b
        if len(cands) == 1:
            return cands[0]
        if self.balance == "round_robin":
            self._rr += 1
            return cands[self._rr % len(cands)]
        if self.balance == "least_conn":
            self._rr += 1
            n = len(cands)
            best = None
            best_load = 0.0
            for i in range(n):
                b = cands[(self._rr + i) % n]
                load = (b.active + 1) / max(b.effective_weight(now, self.slow_start), 0.01)
                if best is None or load < best_load:
                    best, best_load = b, load
            return best
        # Smooth weighted round robin (nginx ngx_http_upstream_round_robin).
        total = 0.0
        best = None
        for b in cands:
            w = b.effective_weight(now, self.slow_start)
            b.current_weight += w
            total += w
            if best is None or b.current_weight > best.current_weight:
                best = b
        assert best is not None
        best.current_weight -= total
        return best
