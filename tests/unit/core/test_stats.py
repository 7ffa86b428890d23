from __future__ import annotations

from hastack.core.stats import Stats


def test_counters_gauges_snapshot_and_prometheus() -> None:
    stats = Stats("cache")
    hits = stats.counter("get_hits", "hits")
    hits.value += 2
    hits.inc()
    items = [1, 2]
    stats.gauge("curr_items", lambda: len(items))
    stats.gauge("version", lambda: "1.6.18")
    snap = stats.snapshot()
    assert snap["get_hits"] == 3 and snap["curr_items"] == 2 and snap["version"] == "1.6.18"
    text = stats.prometheus()
    assert "# TYPE hastack_cache_get_hits counter\nhastack_cache_get_hits 3\n" in text
    assert "hastack_cache_curr_items 2" in text
    assert "version" not in text  # not a number: skipped
    stats.reset()
    assert stats.snapshot()["get_hits"] == 0
