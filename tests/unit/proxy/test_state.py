"""Pure balancing and health state, against simple models (time is an argument)."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.proxy.state import BackendState, PoolState


def pool(weights: list[int], balance: str = "weighted") -> PoolState:
    p = PoolState(balance)  # type: ignore[arg-type]
    for i, w in enumerate(weights):
        p.add(BackendState(f"10.0.0.{i}:80", weight=w))
    return p


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6))
def test_smooth_weighted_round_robin_is_exact_per_cycle(weights: list[int]) -> None:
    p = pool(weights)
    total = sum(weights)
    picks = collections.Counter()
    for _ in range(total * 3):
        b = p.pick(0.0)
        assert b is not None
        picks[b.key] += 1
    assert [picks[b.key] for b in p.backends] == [3 * w for w in weights]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=50))
def test_round_robin_is_fair(n: int, rounds: int) -> None:
    p = pool([1] * n, "round_robin")
    picks = collections.Counter(p.pick(0.0).key for _ in range(n * rounds))  # type: ignore[union-attr]
    assert set(picks.values()) == {rounds}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=6))
def test_least_conn_picks_a_least_loaded_backend(active: list[int]) -> None:
    p = pool([1] * len(active), "least_conn")
    for b, a in zip(p.backends, active, strict=True):
        b.active = a
    chosen = p.pick(0.0)
    assert chosen is not None and chosen.active == min(active)


def test_exclude_max_connections_spares_and_affinity() -> None:
    p = pool([1, 1, 0], "round_robin")
    a, b, spare = p.backends
    assert p.pick(0.0, exclude=[a.key]) is b
    a.max_connections = b.max_connections = 1
    a.active = b.active = 1
    assert p.pick(0.0) is spare  # weight 0 only when nothing else can serve
    a.active = b.active = 0
    assert p.pick(0.0, affinity=b.cid) is b
    assert p.pick(0.0, affinity=b.cid) is b
    b.draining = True  # the pinned backend goes away: the session moves
    assert p.pick(0.0, affinity=b.cid) is a


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.booleans(), max_size=40),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=1, max_value=4),
)
def test_rise_fall_hysteresis_matches_model(results: list[bool], rise: int, fall: int) -> None:
    b = BackendState("x:1")
    up, good, bad = True, 0, 0
    for t, ok in enumerate(results):
        changed = b.check_result(ok, float(t), rise, fall)
        if ok:
            good, bad = good + 1, 0
            flip = not up and good >= rise
        else:
            good, bad = 0, bad + 1
            flip = up and bad >= fall
        if flip:
            up = not up
        assert changed == flip
        assert b.up == up


def test_passive_ejection_and_slow_start() -> None:
    b = BackendState("x:1", weight=10)
    b.connect_failed(100.0, eject_interval=10.0)
    assert not b.available(105.0) and b.available(110.0)
    b.response_ok(110.0)  # a success resets the error count
    for _ in range(4):
        assert not b.response_error(200.0, error_limit=5, eject_interval=10.0)
    assert b.response_error(200.0, error_limit=5, eject_interval=10.0)
    assert b.state_name(205.0) == "ejected"
    b.response_ok(211.0)  # first success after an ejection: slow start begins
    assert b.effective_weight(211.0, slow_start=5.0) < 1.0
    assert b.effective_weight(213.5, slow_start=5.0) == 5.0
    assert b.effective_weight(216.0, slow_start=5.0) == 10.0
