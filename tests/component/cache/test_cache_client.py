"""hastack.cache.client against three in-process cache servers: routing, multi-get, failover."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from hastack.cache.client import CacheClient, CacheError
from hastack.cache.config import CacheConfig
from hastack.cache.server import CacheService
from hastack.config import Address
from hastack.testing import running_service


async def test_routing_multiget_and_failover() -> None:
    async with contextlib.AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(
                running_service(CacheService, CacheConfig(listen=Address("127.0.0.1", 0)))
            )
            for _ in range(3)
        ]
        addrs = [s.listener.address for s in services if s.listener is not None]
        client = CacheClient(addrs, pool_size=2, timeout=5, failure_limit=1, retry_interval=3600)
        try:
            keys = [b"user:%d" % i for i in range(300)]
            results = await asyncio.gather(*(client.set(k, b"v" + k) for k in keys[:150]))
            assert all(results)
            stored = await client.set_many({k: b"v" + k for k in keys[150:]})
            assert stored == dict.fromkeys(keys[150:], True)
            # each key lives exactly on the server ketama names
            for k in keys[:50]:
                idx = client.ketama.server_index(k)
                assert k in services[idx].state.items
            assert all(len(s.state.items) > 30 for s in services)
            got = await client.get_many(keys + [b"missing"])
            assert got == {k: b"v" + k for k in keys}
            assert await client.set(b"counter", b"41")
            assert await client.incr(b"counter", 1) == 42
            assert await client.decr(b"counter", 50) == 0
            assert await client.incr(b"nope", 1) is None
            assert await client.add(b"counter", b"x") is False
            assert await client.delete(b"counter") is True
            with pytest.raises(CacheError, match="non-numeric"):
                await client.incr(b"user:1", 1)
        finally:
            await client.close()

        # kill one server: its keys become misses, the client ejects it and writes elsewhere
        victim = client.ketama.server_index(b"user:7")
        await services[victim].stop()
        assert await client.get(b"user:7") is None
        assert victim not in client._live or client.servers[victim].next_retry > 0
        assert await client.set(b"user:7", b"again")
        assert await client.get(b"user:7") == b"again"
        assert client.ketama.server_index(b"user:7") != victim
        survivors = [k for k in keys if k != b"user:7"]
        got = await client.get_many(survivors)
        lost = [k for k in survivors if k not in got]
        assert lost  # the victim's keys are gone
        assert all(client.ketama.server_index(k) != victim for k in lost)
        # after retry_interval the dead server is tried again (and ejected again)
        client.servers[victim].next_retry = time.monotonic() - 1
        assert client.server_for(b"user:7") is not None
        assert victim in client._live
        await client.get_many(keys)  # its keys fail once more: ejected again
        assert client.servers[victim].next_retry > time.monotonic()
        assert client.server_for(b"user:7") is not client.servers[victim]
        await client.close()


async def test_cancelled_request_frees_its_pool_slot() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = CacheClient([f"127.0.0.1:{port}"], pool_size=1, timeout=30, failure_limit=100)
    try:
        task = asyncio.create_task(client.get(b"k"))
        deadline = asyncio.get_running_loop().time() + 10
        while client._pools[0].semaphore().locked() is False:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client._pools[0].semaphore().locked()  # the one slot is free again
        assert client._pools[0].idle == []  # and the half-used connection was not kept
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
