"""SHARDS miss-ratio curve against an exact LRU simulation; Space-Saving hot keys."""

from __future__ import annotations

import random
from collections import OrderedDict

from hypothesis import given
from hypothesis import strategies as st

from hastack.cache.mrc import HotKeys, MissRatioCurve

# Stated accuracy: with a 10 % spatial sample (SHARDS_adj), every point of the estimated curve
# for caches of at least 50 sampled keys (C >= 50 / rate) is within 0.05 absolute miss ratio of
# the exact LRU curve for this Zipf(0.9) trace. Smaller caches are dominated by which hot keys
# happen to be sampled and are not claimed.
MAX_ABS_ERROR = 0.05


def zipf_trace(n_keys: int, n: int, s: float, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** s for i in range(n_keys)]
    keys = [b"key:%d" % i for i in range(n_keys)]
    return rng.choices(keys, weights, k=n)


def exact_lru_miss_ratio(trace: list[bytes], capacity: int) -> float:
    cache: OrderedDict[bytes, None] = OrderedDict()
    misses = 0
    for k in trace:
        if k in cache:
            cache.move_to_end(k)
        else:
            misses += 1
            cache[k] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return misses / len(trace)


def test_shards_matches_exact_lru() -> None:
    trace = zipf_trace(20000, 120000, 0.9, seed=1)
    mrc = MissRatioCurve(rate=0.1, max_keys=100000)
    for k in trace:
        mrc.access(k)
    for capacity in (500, 1000, 2000, 5000, 10000):
        exact = exact_lru_miss_ratio(trace, capacity)
        estimate = mrc.miss_ratio(capacity)
        assert abs(exact - estimate) <= MAX_ABS_ERROR, (capacity, exact, estimate)


def test_bounded_keys_lowers_the_rate() -> None:
    mrc = MissRatioCurve(rate=1.0, max_keys=500)
    for i in range(20000):
        mrc.access(b"k%d" % (i % 5000))
    assert len(mrc.last) <= 500
    assert mrc.rate < 0.2
    assert 0.0 <= mrc.miss_ratio(1000) <= 1.0
    assert any(name.startswith("mrc:") for name, _ in mrc.stats_lines(100.0))


def test_exact_at_full_rate_for_a_loop() -> None:
    """A cyclic scan over 100 keys: LRU misses everything below 100 items, nothing above."""
    mrc = MissRatioCurve(rate=1.0, max_keys=1000)
    for _ in range(20):
        for i in range(100):
            mrc.access(b"k%d" % i)
    assert mrc.miss_ratio(90) == 1.0
    assert abs(mrc.miss_ratio(120) - 100 / 2000) < 1e-9


@given(st.lists(st.integers(0, 30), max_size=300))
def test_hotkeys_bounded_and_finds_heavy_hitters(keys: list[int]) -> None:
    hk = HotKeys(capacity=8, sample=1)
    stream = [b"hot"] * (len(keys) + 1) + [b"k%d" % k for k in keys]
    random.Random(0).shuffle(stream)
    for k in stream:
        hk.add(k)
    assert len(hk.counts) <= 8
    top = hk.top(1)
    assert top[0][0] == b"hot"  # > half of the stream: Space-Saving always keeps it on top


@given(st.lists(st.integers(0, 40), max_size=400), st.integers(1, 10))
def test_hotkeys_stream_summary_matches_naive_space_saving(keys: list[int], cap: int) -> None:
    """Counts and errors equal a naive Space-Saving (ties in the victim choice aside: compare
    the multiset of counts and the guarantee count - error <= true count <= count)."""
    hk = HotKeys(capacity=cap, sample=1)
    true: dict[bytes, int] = {}
    for k in keys:
        key = b"k%d" % k
        hk.add(key)
        true[key] = true.get(key, 0) + 1
    assert len(hk.counts) <= cap
    assert sum(hk.counts.values()) == len(keys)
    for key, count in hk.counts.items():
        assert count - hk.errors[key] <= true[key] <= count
    # every key more frequent than len/cap must be tracked
    for key, n in true.items():
        if n > len(keys) / cap:
            assert key in hk.counts


def test_writes_move_keys_but_are_not_counted() -> None:
    """Cache-aside: get (miss) then set of the same key. The set is no hit; the next get of
    the key is a hit for any cache holding what was touched since the set."""
    mrc = MissRatioCurve(rate=1.0, max_keys=1000)
    for i in range(100):
        key = b"k%d" % i
        mrc.access(key)  # miss (cold)
        mrc.update(key)  # the application fills the cache
    assert mrc.accesses == 100 and mrc.miss_ratio(10**6) == 1.0
    mrc.access(b"k99")  # just written: a hit even for a 1-item cache
    assert mrc.miss_ratio(1) == 100 / 101
