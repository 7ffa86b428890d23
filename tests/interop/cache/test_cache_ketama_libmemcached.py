"""hastack's ketama against libmemcached itself (``libmemcached.so.11`` from libmemcached-tools,
the library pylibmc wraps), through ctypes: the same server for every key."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.cache.client import Ketama, Server

pytestmark = pytest.mark.peer

MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED = 16  # libmemcached-1.0/types/behavior.h

SERVER_SETS = [
    [Server("10.0.0.1", 11211), Server("10.0.0.2", 11211), Server("10.0.0.3", 11211)],
    [Server("127.0.0.1", 11211, 1), Server("127.0.0.1", 11212, 3), Server("cache-c", 22122, 2)],
    [Server("a.example", 11211, 5), Server("b.example", 11311, 1)],
    [Server(f"10.1.0.{i}", 11211 + i, 1 + i % 3) for i in range(7)],
]


def libmemcached_mapper(servers: list[Server]):  # type: ignore[no-untyped-def]
    name = ctypes.util.find_library("memcached") or "libmemcached.so.11"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.fail("libmemcached.so.11 missing (Debian package libmemcached-tools)")
    lib.memcached_create.restype = ctypes.c_void_p
    lib.memcached_create.argtypes = [ctypes.c_void_p]
    lib.memcached_behavior_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
    lib.memcached_server_add_with_weight.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ushort, ctypes.c_uint32]
    lib.memcached_generate_hash.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.memcached_generate_hash.restype = ctypes.c_uint32
    lib.memcached_free.argtypes = [ctypes.c_void_p]
    mc = lib.memcached_create(None)
    assert lib.memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) == 0
    for s in servers:
        assert lib.memcached_server_add_with_weight(mc, s.host.encode(), s.port, s.weight) == 0

    def server_of(key: bytes) -> int:
        return int(lib.memcached_generate_hash(mc, key, len(key)))

    return server_of, lambda: lib.memcached_free(mc)


@pytest.mark.parametrize("set_index", range(len(SERVER_SETS)))
def test_matches_libmemcached(set_index: int) -> None:
    servers = SERVER_SETS[set_index]
    ours = Ketama(servers)
    theirs, free = libmemcached_mapper(servers)
    try:
        for i in range(3000):
            key = b"key:%d" % i
            assert ours.server_index(key) == theirs(key), key
    finally:
        free()


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=250))
def test_matches_libmemcached_for_any_key(key: bytes) -> None:
    servers = SERVER_SETS[1]
    theirs, free = libmemcached_mapper(servers)
    try:
        assert Ketama(servers).server_index(key) == theirs(key)
    finally:
        free()




def test_ejected_server_ring_matches_libmemcached_without_it() -> None:
    """libmemcached rebuilds its continuum over the live servers only (auto-eject): the same
    as a client configured without the dead one."""
    servers = SERVER_SETS[3]
    live = [0, 2, 3, 5, 6]
    ours = Ketama(servers)
    ours.rebuild(set(live))
    theirs, free = libmemcached_mapper([servers[i] for i in live])
    try:
        for i in range(2000):
            key = b"key:%d" % i
            assert ours.server_index(key) == live[theirs(key)], key
    finally:
        free()
