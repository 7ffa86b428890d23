"""Mixed clients agree: keys written by pylibmc (libmemcached, ketama_weighted) land on the
server that hastack.cache.client's Ketama names, and hastack's client reads them back."""

from __future__ import annotations

import pytest

from hastack.cache.client import CacheClient, Ketama, Server
from hastack.testing import missing_peer

try:
    import pylibmc
except ImportError:
    missing_peer("pylibmc not installed (the [test] extra installs it)")
pytestmark = pytest.mark.peer


async def test_pylibmc_and_hastack_client_agree(three_caches) -> None:  # type: ignore[no-untyped-def]
    weights = [1, 3, 2]
    servers = [Server("127.0.0.1", c.port, w) for c, w in zip(three_caches, weights, strict=True)]
    mc = pylibmc.Client(
        [f"127.0.0.1:{s.port}:{s.weight}" for s in servers],
        behaviors={"ketama_weighted": True},
    )
    keys = [f"mixed:{i}" for i in range(400)]
    for k in keys:
        mc.set(k, b"from-pylibmc")
    mc.disconnect_all()
    ring = Ketama(servers)
    for k in keys:
        owner = ring.server_index(k.encode())
        assert k.encode() in three_caches[owner].service.state.items, k
    client = CacheClient([("127.0.0.1", s.port, s.weight) for s in servers])
    try:
        got = await client.get_many([k.encode() for k in keys])
    finally:
        await client.close()
    assert got == {k.encode(): b"from-pylibmc" for k in keys}
