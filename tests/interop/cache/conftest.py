"""Fixtures: a real memcached 1.6.18 and an in-process hastack cache, both on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from hastack.cache.config import CacheConfig
from hastack.cache.server import CacheService
from hastack.config import Address
from hastack.testing import free_port, poll_until

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"


def answers_version(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"version\r\n")
            return s.recv(100).startswith(b"VERSION")
    except OSError:
        return False


def wait_ready(port: int, timeout: float = 15.0) -> None:
    poll_until(lambda: answers_version(port), timeout, f"memcached on port {port}", 0.05)


@pytest.fixture(scope="session")
def memcached_port() -> Iterator[int]:
    if not os.path.exists(MEMCACHED):
        pytest.fail("memcached is not installed (Debian package memcached, .ci/apt-packages.txt)")
    port = free_port()
    argv = [MEMCACHED, "-U", "0", "-t", "1", "-m", "64", "-l", "127.0.0.1", "-p", str(port)]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class ThreadedCache:
    """A CacheService on its own event loop in a thread, for synchronous tests and clients."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.service = CacheService(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedCache:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(30)
        return self

    @property
    def port(self) -> int:
        assert self.service.listener is not None
        return self.service.listener.address.port

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


@pytest.fixture(scope="session")
def hastack_cache() -> Iterator[ThreadedCache]:
    with ThreadedCache(CacheConfig(listen=Address("127.0.0.1", 0))) as cache:
        yield cache


@pytest.fixture
def three_caches() -> Iterator[list[ThreadedCache]]:
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(ThreadedCache(CacheConfig(listen=Address("127.0.0.1", 0))))
            for _ in range(3)
        ]
