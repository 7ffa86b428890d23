"""Real third-party clients against hastack's cache: pymemcache and aiomcache."""

from __future__ import annotations

import aiomcache
import pytest
from pymemcache.client.base import Client

pytestmark = pytest.mark.peer


def test_pymemcache(hastack_cache) -> None:  # type: ignore[no-untyped-def]
    c = Client(("127.0.0.1", hastack_cache.port), default_noreply=False, connect_timeout=5,
               timeout=5)
    try:
        assert c.set("pm:a", b"hello", expire=100)
        assert c.get("pm:a") == b"hello"
        assert c.add("pm:a", b"x") is False
        assert c.replace("pm:a", b"world")
        assert c.append("pm:a", b"!") and c.prepend("pm:a", b"<")
        assert c.get("pm:a") == b"<world!"
        value, cas = c.gets("pm:a")
        assert value == b"<world!"
        assert c.cas("pm:a", b"new", cas) is True
        assert c.cas("pm:a", b"newer", cas) is False
        c.set_many({"pm:b": b"1", "pm:c": b"2"})
        assert c.get_many(["pm:a", "pm:b", "pm:c", "pm:zz"]) == {
            "pm:a": b"new", "pm:b": b"1", "pm:c": b"2"}
        assert c.incr("pm:b", 41) == 42
        assert c.decr("pm:b", 100) == 0
        assert c.incr("pm:nope", 1) is None
        assert c.touch("pm:c", 10) is True
        assert c.delete("pm:c") is True
        assert c.delete("pm:c") is False
        assert c.version() == b"1.6.18"
        stats = c.stats()
        assert stats[b"curr_connections"] >= 1 and b"get_hits" in stats
        assert c.raw_command(b"mg pm:a v\r\nmn", b"MN\r\n").startswith(b"VA 3")
        with pytest.raises(Exception, match="too large"):
            c.set("pm:big", b"x" * (2 * 1024 * 1024))
        assert c.get("pm:a") == b"new"  # the connection survived the oversize set
        c.flush_all()
        assert c.get("pm:a") is None
    finally:
        c.close()


async def test_aiomcache(hastack_cache) -> None:  # type: ignore[no-untyped-def]
    mc = aiomcache.Client("127.0.0.1", hastack_cache.port, pool_size=2)
    try:
        await mc.set(b"am:a", b"v1", exptime=100)
        assert await mc.get(b"am:a") == b"v1"
        assert await mc.add(b"am:a", b"x") is False
        assert await mc.replace(b"am:a", b"v2") is True
        assert await mc.multi_get(b"am:a", b"am:none") == (b"v2", None)
        _value, cas = await mc.gets(b"am:a")
        assert await mc.cas(b"am:a", b"v3", cas) is True
        await mc.set(b"am:n", b"5")
        assert await mc.incr(b"am:n", 3) == 8
        assert await mc.decr(b"am:n", 10) == 0
        assert await mc.append(b"am:a", b"+") is True
        assert await mc.get(b"am:a") == b"v3+"
        assert await mc.touch(b"am:a", 50) is True
        assert await mc.delete(b"am:a") is True
        assert await mc.version() == b"1.6.18"
        stats = await mc.stats()
        assert b"cmd_get" in stats
        await mc.flush_all()
        assert await mc.get(b"am:n") is None
    finally:
        await mc.close()


def test_size_estimate_explains_a_plain_memcached(memcached_port: int) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hastack.cli", "cache", "size-estimate",
         f"127.0.0.1:{memcached_port}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "'stats mrc' answered 'ERROR' (not a hastack cache?)" in out.stdout
