"""Reproxy header parsing and the dead-host memory (pure parts of reproxy.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.proxy.reproxy import CacheEntry, DeadHosts, ReproxyCache, parse_cache_for, parse_urls


def test_parse_urls_perlbal_rules() -> None:
    value = (
        b"http://10.0.0.1:7500/dev1/0/000/001.fid  http://10.0.0.2/x\t"
        b"https://10.0.0.3/no http://host.name/no http://10.0.0.4:99999/no "
        b"http://300.1.1.1/no http://10.0.0.5:7500"
    )
    assert parse_urls(value) == [
        ("10.0.0.1", 7500, b"/dev1/0/000/001.fid"),
        ("10.0.0.2", 80, b"/x"),
        ("10.0.0.5", 7500, b"/"),
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_urls_never_raises(value: bytes) -> None:
    for host, port, path in parse_urls(value):
        assert all(0 <= int(p) <= 255 for p in host.split("."))
        assert 0 < port < 65536 and path.startswith(b"/")


def test_parse_cache_for() -> None:
    hdrs = [(b"Last-Modified", b"x"), (b"Content-Type", b"a/b"), (b"X-Other", b"1")]
    assert parse_cache_for(b"30; Last-Modified content-type", hdrs) == (
        30.0,
        [(b"Last-Modified", b"x"), (b"Content-Type", b"a/b")],
    )
    assert parse_cache_for(b"bogus", hdrs) is None
    assert parse_cache_for(b"0", hdrs) is None


def test_dead_hosts_order_and_single_prober() -> None:
    d = DeadHosts(interval=5.0, probe_window=2.0)
    urls = [("10.0.0.1", 80, b"/a"), ("10.0.0.2", 80, b"/a")]
    d.mark("10.0.0.1:80", now=100.0)
    assert d.order(urls, 101.0) == [urls[1], urls[0]]
    # memory expired: exactly one caller probes, the others still see it dead
    assert d.order(urls, 106.0) == urls
    assert d.order(urls, 106.5) == [urls[1], urls[0]]
    d.alive("10.0.0.1:80")
    assert d.order(urls, 106.6) == urls


def test_reproxy_cache_lru_and_expiry() -> None:
    c = ReproxyCache(max_entries=2)
    for i in range(3):
        c.put(b"k%d" % i, CacheEntry(10.0, b"u", [], None, None))
    assert c.get(b"k0", 0.0) is None and len(c) == 2
    assert c.get(b"k2", 0.0) is not None
    assert c.get(b"k2", 10.0) is None  # expired
