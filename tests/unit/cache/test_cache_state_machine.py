"""CacheState + Engine against a simple model, driven by hypothesis: stores, gets, deletes,
touches, incr, flush_all with delay, and time passing (expiry), with no memory pressure."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from hastack.cache.engine import Engine
from hastack.cache.proto import ServerCodec
from hastack.cache.state import CacheState

T0 = 1_800_000_000
KEYS = st.sampled_from([b"a", b"b", b"c"])
TTLS = st.sampled_from([0, 0, 1, 5, 30, -1])


class CacheModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(CacheState(started=T0 - 1000))
        self.now = T0
        # key -> [value, expires at or 0, last update time (memcached's it->time)]
        self.model: dict[bytes, list[Any]] = {}
        self.flush_at = 0  # memcached's oldest_live: once reached, older items are dead

    def send(self, data: bytes) -> bytes:
        codec = ServerCodec()
        codec.receive_data(data)
        out = b""
        while (ev := codec.next_event()) is not None:
            reply = self.engine.execute(ev, self.now)
            assert isinstance(reply, bytes)
            out += reply
        return out

    def live(self, key: bytes) -> bytes | None:
        entry = self.model.get(key)
        if entry is None:
            return None
        value, exp, time = entry
        flushed = self.flush_at and self.flush_at <= self.now and time <= self.flush_at
        if flushed or (exp and exp <= self.now):
            del self.model[key]
            return None
        assert isinstance(value, bytes)
        return value

    @staticmethod
    def expires(ttl: int, now: int) -> int:
        return 0 if ttl == 0 else (now + ttl if ttl > 0 else 1)

    def bump(self, key: bytes) -> None:
        """memcached refreshes an item's time on access at most once a minute."""
        if self.model[key][2] < self.now - 60:
            self.model[key][2] = self.now

    @rule(key=KEYS, value=st.sampled_from([b"", b"1", b"xyz", b"41"]), ttl=TTLS)
    def set(self, key: bytes, value: bytes, ttl: int) -> None:
        self.live(key)
        reply = self.send(b"set %s 0 %d %d\r\n%s\r\n" % (key, ttl, len(value), value))
        assert reply == b"STORED\r\n"
        self.model[key] = [value, self.expires(ttl, self.now), self.now]

    @rule(key=KEYS, value=st.sampled_from([b"v", b"7"]))
    def add(self, key: bytes, value: bytes) -> None:
        exists = self.live(key) is not None
        reply = self.send(b"add %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        assert reply == (b"NOT_STORED\r\n" if exists else b"STORED\r\n")
        if exists:
            self.bump(key)
        else:
            self.model[key] = [value, 0, self.now]

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        value = self.live(key)
        reply = self.send(b"get %s\r\n" % key)
        if value is None:
            assert reply == b"END\r\n"
        else:
            assert reply == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
            self.bump(key)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        exists = self.live(key) is not None
        reply = self.send(b"delete %s\r\n" % key)
        assert reply == (b"DELETED\r\n" if exists else b"NOT_FOUND\r\n")
        self.model.pop(key, None)

    @rule(key=KEYS, ttl=TTLS)
    def touch(self, key: bytes, ttl: int) -> None:
        value = self.live(key)
        reply = self.send(b"touch %s %d\r\n" % (key, ttl))
        if value is None:
            assert reply == b"NOT_FOUND\r\n"
        else:
            assert reply == b"TOUCHED\r\n"
            self.model[key][1] = self.expires(ttl, self.now)
            self.bump(key)

    @rule(key=KEYS)
    def incr(self, key: bytes) -> None:
        value = self.live(key)
        reply = self.send(b"incr %s 1\r\n" % key)
        if value is None:
            assert reply == b"NOT_FOUND\r\n"
        elif not value.strip() or not value.strip().isdigit():
            assert reply.startswith(b"CLIENT_ERROR cannot increment")
        else:
            new = b"%d" % (int(value) + 1)
            assert reply == new + b"\r\n"
            if len(new) <= len(value):  # in place, padded with spaces
                self.model[key][0] = new + b" " * (len(value) - len(new))
                self.bump(key)
            else:  # a new item
                self.model[key][0] = new
                self.model[key][2] = self.now

    @rule(delay=st.sampled_from([0, 3]))
    def flush(self, delay: int) -> None:
        assert self.send(b"flush_all %d\r\n" % delay) == b"OK\r\n"
        if delay == 0:
            self.model.clear()  # every current item, for good
            self.flush_at = self.now - 1
        else:
            # memcached: from second now + delay - 1 on, items last updated up to then are dead
            self.flush_at = self.now + delay - 1

    @rule(seconds=st.sampled_from([1, 2, 10, 61]))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def accounting(self) -> None:
        st_ = self.engine.state
        assert st_.bytes == sum(
            230 + len(k) + len(it.data) for k, it in st_.items.items()
        )


CacheModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestCacheModel = CacheModel.TestCase
