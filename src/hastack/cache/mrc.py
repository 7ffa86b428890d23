"""Online memory sizing: a SHARDS miss-ratio curve and a bounded hot-key sketch. Pure.

``MissRatioCurve`` implements SHARDS (Waldspurger et al., FAST '15): a key is sampled iff
``crc32(key) mod 2^24 < rate * 2^24`` (spatial sampling, so every access to a sampled key is
seen). For each sampled access the LRU stack distance among sampled keys (distinct sampled keys
touched since this key's previous access) is found with a Fenwick tree over access times and
scaled by ``1 / rate``. The histogram of scaled distances is the miss-ratio curve: an LRU cache
of ``C`` items hits exactly the accesses whose distance is below ``C``. When more than
``max_keys`` keys are tracked the rate is lowered and keys above the new threshold are dropped
(SHARDS with a fixed memory bound), so memory is O(max_keys) whatever the workload.

``HotKeys`` is the Space-Saving algorithm (Metwally et al. 2005) over a random 1-in-``sample``
subsample of accesses: ``capacity`` counters, each with its overestimation error.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable

_P = 1 << 24  # sampling modulus


class _Fenwick:
    __slots__ = ("n", "tree")

    def __init__(self, n: int) -> None:
        self.n = n
        self.tree = [0] * (n + 1)

    def add(self, i: int, v: int) -> None:
        i += 1
        n = self.n
        tree = self.tree
        while i <= n:
            tree[i] += v
            i += i & -i

    def prefix(self, i: int) -> int:
        """Sum of positions [0, i)."""
        s = 0
        tree = self.tree
        while i > 0:
            s += tree[i]
            i -= i & -i
        return s


class MissRatioCurve:
    """SHARDS reuse-distance sampler.

    ``rate``: initial sampling rate (0 < rate <= 1). ``max_keys``: bound on tracked keys
    (memory: a few hundred bytes per key). ``time_slots``: Fenwick tree size; compacted when
    full.
    """

    def __init__(self, rate: float = 0.01, max_keys: int = 16384, time_slots: int = 1 << 16):
        if not 0 < rate <= 1:
            raise ValueError("rate must be in (0, 1]")
        self.threshold = max(1, int(rate * _P))
        self.max_keys = max_keys
        self.time_slots = max(time_slots, 2 * max_keys)
        self.last: dict[bytes, int] = {}  # sampled key -> time slot of its last access
        self.key_hash: dict[bytes, int] = {}
        self._tree = _Fenwick(self.time_slots)
        self._clock = 0
        # histogram of scaled distances in log2 buckets of 1/8 octave; key -> count (float:
        # counts are scaled by 1/rate at the rate in force when they were taken)
        self.hist: dict[int, float] = {}
        self.cold = 0.0  # first accesses (infinite distance), scaled
        self.total = 0.0  # sampled accesses, scaled
        self.accesses = 0  # every access seen (sampled or not): SHARDS_adj's true total

    @property
    def rate(self) -> float:
        return self.threshold / _P

    def access(self, key: bytes) -> None:
        """A read (get, gat, mg): counted in the curve and moves the key to the LRU front."""
        self.accesses += 1
        h = zlib.crc32(key) & (_P - 1)
        if h >= self.threshold:
            return
        self._sampled(key, h)

    def update(self, key: bytes) -> None:
        """A write (set, ...): moves the key to the LRU front but is no hit or miss, so that a
        cache-aside "get miss, then set" counts once, as the hit ratio clients observe."""
        h = zlib.crc32(key) & (_P - 1)
        if h < self.threshold:
            self._sampled(key, h, read=False)

    def _sampled(self, key: bytes, h: int, read: bool = True) -> None:
        scale = _P / self.threshold
        if read:
            self.total += scale
        last = self.last
        t = self._clock
        if t >= self.time_slots:
            self._compact()
            t = self._clock
        prev = last.get(key)
        tree = self._tree
        if prev is None:
            if read:
                self.cold += scale
            self.key_hash[key] = h
            if len(last) >= self.max_keys:
                self._lower_rate()
                if h >= self.threshold:
                    return
        else:
            if read:
                distance = tree.prefix(t) - tree.prefix(prev + 1)
                b = _bucket(distance * scale)
                self.hist[b] = self.hist.get(b, 0.0) + scale
            tree.add(prev, -1)
        tree.add(t, 1)
        last[key] = t
        self._clock = t + 1

    def _compact(self) -> None:
        order = sorted(self.last.items(), key=lambda kv: kv[1])
        self._tree = _Fenwick(self.time_slots)
        for i, (k, _) in enumerate(order):
            self.last[k] = i
            self._tree.add(i, 1)
        self._clock = len(order)

    def _lower_rate(self) -> None:
        """Drop the tracked keys with the largest hashes until 3/4 of max_keys remain."""
        keep = (self.max_keys * 3) // 4
        ranked = sorted(self.key_hash.items(), key=lambda kv: kv[1])
        self.threshold = max(1, ranked[keep][1])
        for k, _h in ranked[keep:]:
            del self.key_hash[k]
            t = self.last.pop(k, None)
            if t is not None:
                self._tree.add(t, -1)

    def miss_ratio(self, items: float) -> float:
        """Estimated miss ratio of an LRU cache holding ``items`` items."""
        if self.total <= 0:
            return 1.0
        hits = 0.0
        for b, count in self.hist.items():
            if _bucket_value(b) < items:
                hits += count
        # SHARDS_adj: the sample saw `total` scaled accesses where `accesses` happened; the
        # difference is credited to the smallest distances (hits for any cache size).
        n = self.accesses or self.total
        misses = self.total - hits
        return max(0.0, min(1.0, misses / n))

    def curve(self, sizes: Iterable[float]) -> list[tuple[float, float]]:
        return [(s, self.miss_ratio(s)) for s in sizes]

    def stats_lines(self, bytes_per_item: float = 0.0) -> list[tuple[str, object]]:
        lines: list[tuple[str, object]] = [
            ("mrc_sample_rate", f"{self.rate:.6f}"),
            ("mrc_tracked_keys", len(self.last)),
            ("mrc_accesses", self.accesses),
            ("mrc_sampled_accesses", round(self.total * self.rate)),
            ("mrc_cold_misses", int(self.cold)),
            ("mrc_bytes_per_item", int(bytes_per_item)),
        ]
        for items in _default_sizes(len(self.last) / max(self.rate, 1e-9)):
            mr = self.miss_ratio(items)
            lines.append((f"mrc:{int(items)}", f"{mr:.4f}"))
        return lines


_STEPS = 32  # histogram buckets per octave of distance (about 2 % wide)


def _bucket(d: float) -> int:
    # bucket b covers [2 ** (b / _STEPS), 2 ** ((b + 1) / _STEPS)); distance 0 -> bucket -1
    if d < 1:
        return -1
    return int(math.log2(d) * _STEPS)


def _bucket_value(b: int) -> float:
    """Representative distance of a bucket: its geometric midpoint."""
    if b < 0:
        return 0.0
    return float(2 ** ((b + 0.5) / _STEPS))


def _default_sizes(keys_estimate: float, points: int = 24) -> list[float]:
    """Cache sizes (items) to report: log-spaced from 16 items to 1.5x the keys seen."""
    top = max(32.0, keys_estimate * 1.5)
    ratio = (top / 16.0) ** (1 / (points - 1))
    return [16.0 * ratio**i for i in range(points)]


class HotKeys:
    """Space-Saving top-k over a 1-in-``sample`` subsample of accesses. ``capacity`` counters.

    Counters live in a stream-summary (count -> keys with that count, plus the minimum count),
    so a new key replaces a minimum counter in O(1) instead of scanning all ``capacity``.
    """

    def __init__(self, capacity: int = 128, sample: int = 8) -> None:
        if capacity < 1 or sample < 1:
            raise ValueError("capacity and sample must be positive")
        self.capacity = capacity
        self.sample = sample
        self.counts: dict[bytes, int] = {}
        self.errors: dict[bytes, int] = {}
        self._buckets: dict[int, set[bytes]] = {}
        self._min = 0
        self._rng = random.Random()
        self._left = self.next_gap()

    def next_gap(self) -> int:
        """Accesses until the next sampled one: uniform on 1 .. 2*sample-1 (mean ``sample``).
        A random gap, because a fixed 1-in-N stride aliases with periodic access patterns
        (alternating keys would only ever sample one of them)."""
        return self._rng.randint(1, 2 * self.sample - 1)

    def add(self, key: bytes) -> None:
        self._left -= 1
        if self._left:
            return
        self._left = self.next_gap()
        self.add_sampled(key)

    def add_sampled(self, key: bytes) -> None:
        """Count one access already chosen by the 1-in-``sample`` subsampling."""
        counts = self.counts
        buckets = self._buckets
        c = counts.get(key)
        if c is not None:
            bucket = buckets[c]
            bucket.discard(key)
            if not bucket:
                del buckets[c]
                if c == self._min:
                    self._min = c + 1
            counts[key] = c + 1
            buckets.setdefault(c + 1, set()).add(key)
            return
        if len(counts) < self.capacity:
            counts[key] = 1
            self.errors[key] = 0
            buckets.setdefault(1, set()).add(key)
            self._min = 1
            return
        floor = self._min
        bucket = buckets[floor]
        victim = bucket.pop()
        if not bucket:
            del buckets[floor]
            self._min = floor + 1
        del counts[victim]
        self.errors.pop(victim, None)
        counts[key] = floor + 1
        self.errors[key] = floor
        buckets.setdefault(floor + 1, set()).add(key)

    def top(self, k: int = 10) -> list[tuple[bytes, int, int]]:
        """(key, estimated count, max overestimate), most frequent first; counts scaled up."""
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])[:k]
        return [(key, c * self.sample, self.errors.get(key, 0) * self.sample) for key, c in ranked]

    def stats_lines(self, k: int = 10) -> list[tuple[str, object]]:
        lines: list[tuple[str, object]] = [("hotkeys_sample", self.sample)]
        for i, (key, count, err) in enumerate(self.top(k)):
            lines.append((f"hotkey:{i}", f"{key.decode('latin-1')} {count} {err}"))
        return lines
