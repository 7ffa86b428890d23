"""Command semantics: parsed events in, memcached 1.6.18 reply bytes out. Pure: ``now`` is passed.

The server feeds every event from ``proto.ServerCodec`` to ``Engine.execute`` and writes what
comes back. Statistics that only the server knows (connections, bytes on the wire, rusage)
come from the ``server_stats`` callback so that ``stats`` is one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote
from zlib import crc32

from hastack.cache import proto
from hastack.cache.mrc import HotKeys, MissRatioCurve
from hastack.cache.proto import (
    ADD,
    APPEND,
    CAS,
    PREPEND,
    REPLACE,
    SET,
    Arith,
    BadChunk,
    Delete,
    Dump,
    Event,
    FlushAll,
    Get,
    Meta,
    MetaFlags,
    Simple,
    Stats,
    Store,
    Touch,
    strtoull,
)
from hastack.cache.state import (
    FETCHED,
    STALE,
    TOKEN_SENT,
    CacheState,
    Item,
    make_data,
    memcached_size,
    slab_class,
)

VERSION = b"1.6.18"  # the memcached release whose wire behaviour we reproduce

STORED = b"STORED\r\n"
NOT_STORED = b"NOT_STORED\r\n"
EXISTS = b"EXISTS\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
END = b"END\r\n"

_U64 = (1 << 64) - 1
_MRC_MASK = (1 << 24) - 1  # MissRatioCurve's sampling modulus

# store results
R_STORED, R_NOT_STORED, R_EXISTS, R_NOT_FOUND, R_NO_MEMORY = range(5)
_TEXT_RESULT = [STORED, NOT_STORED, EXISTS, NOT_FOUND, proto.OUT_OF_MEMORY]
_META_RESULT = [b"HD", b"NS", b"EX", b"NF", b""]


class StreamReply:
    """A reply too large to build at once (a key dump): the server writes its chunks one by
    one, pausing with backpressure like any other reply."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks


class Quit(Exception):
    """Raised by ``execute`` for ``quit``: the server closes the connection."""


ServerStats = Callable[[], list[tuple[str, object]]]


class Engine:
    def __init__(
        self,
        state: CacheState,
        *,
        server_stats: ServerStats | None = None,
        settings: ServerStats | None = None,
        mrc: MissRatioCurve | None = None,
        hotkeys: HotKeys | None = None,
        conns_stats: ServerStats | None = None,
        flush_enabled: bool = True,  # memcached -F turns flush_all off
    ) -> None:
        self.state = state
        self.server_stats = server_stats or (lambda: [])
        self.conns_stats = conns_stats or (lambda: [])
        self.flush_enabled = flush_enabled
        self.settings = settings or (lambda: [])
        self.mrc = mrc
        self.hotkeys = hotkeys
        self.verbosity = 0
        self._observing = mrc is not None or hotkeys is not None
        self._hot_left = hotkeys.next_gap() if hotkeys is not None else 0
        # handler per event type (each takes its own event class, hence Any)
        self._dispatch: dict[type, Callable[[Any, int], bytes | StreamReply]] = {
            Get: self._get,
            Store: self._store,
            Delete: self._delete,
            Arith: self._arith,
            Touch: self._touch,
            FlushAll: self._flush,
            Meta: self._meta,
            Simple: self._simple,
            Stats: self._stats,
            BadChunk: self._bad_chunk,
            Dump: self._dump,
        }

    def execute(self, ev: Event, now: int) -> bytes | StreamReply:
        """Apply one command; return its reply (b"" for none; a ``StreamReply`` for a key
        dump). Raises ``Quit`` for quit."""
        return self._dispatch[type(ev)](ev, now)

    # -- get family ----------------------------------------------------------------------------
    def _observe(self, keys: list[bytes]) -> None:
        """Feed the MRC sampler and the hot-key sketch (both subsample; this stays cheap)."""
        mrc = self.mrc
        if mrc is not None:
            mrc.accesses += len(keys)
            threshold = mrc.threshold
            for key in keys:
                h = crc32(key) & _MRC_MASK
                if h < threshold:
                    mrc._sampled(key, h)
        hot = self.hotkeys
        if hot is not None:
            left = self._hot_left
            for key in keys:
                left -= 1
                if not left:
                    hot.add_sampled(key)
                    left = hot.next_gap()
            self._hot_left = left

    def _get(self, ev: Get, now: int) -> bytes:
        st = self.state
        keys = ev.keys
        if len(keys) == 1 and ev.exptime is None and not ev.with_cas and not ev.error:
            # fast path: one key, plain get (the bulk of a cache's traffic)
            key = keys[0]
            mrc = self.mrc
            if mrc is not None:
                mrc.accesses += 1
                h = crc32(key) & _MRC_MASK
                if h < mrc.threshold:
                    mrc._sampled(key, h)
            hot = self.hotkeys
            if hot is not None:
                self._hot_left -= 1
                if not self._hot_left:
                    hot.add_sampled(key)
                    self._hot_left = hot.next_gap()
            st.cmd_get += 1
            it = st.fetch(key, now)
            if it is None:
                st.get_misses += 1
                return END
            st.get_hits += 1
            return b"".join((b"VALUE ", key, it.data, END))
        if self._observing:
            self._observe(keys)
        out: list[bytes] = []
        if ev.exptime is None:
            fetch = st.fetch
            append = out.append
            hits = 0
            for key in keys:
                it = fetch(key, now)
                if it is None:
                    continue
                hits += 1
                if ev.with_cas:
                    d = it.data
                    i = d.index(b"\r")
                    append(b"VALUE " + key + d[:i] + b" %d" % it.cas + d[i:])
                else:
                    append(b"VALUE " + key + it.data)
            st.cmd_get += len(keys)
            st.get_hits += hits
            st.get_misses += len(keys) - hits
        else:
            exptime = st.realtime(ev.exptime, now)
            for key in keys:
                it = st.fetch(key, now)
                st.cmd_touch += 1
                if it is None:
                    st.touch_misses += 1
                    continue
                st.touch_hits += 1
                it.exptime = exptime
                if ev.with_cas:
                    d = it.data
                    i = d.index(b"\r")
                    out.append(b"VALUE " + key + d[:i] + b" %d" % it.cas + d[i:])
                else:
                    out.append(b"VALUE " + key + it.data)
        if ev.error:
            return ev.error  # memcached discards the values it had gathered
        out.append(END)
        return b"".join(out)

    # -- storage -------------------------------------------------------------------------------
    def store(
        self,
        mode: int,
        key: bytes,
        flags: int,
        exptime: int,
        value: bytes,
        cas_in: int,
        now: int,
        set_stale: bool = False,
    ) -> tuple[int, Item | None]:
        """memcached's ``do_store_item``. ``exptime`` is already absolute (realtime())."""
        st = self.state
        old = st.peek(key, now)
        if old is not None:
            if cas_in == 0:
                cas_res = 0  # none
            elif cas_in == old.cas:
                cas_res = 1  # match
            elif set_stale and cas_in < old.cas:
                cas_res = 3  # stale
            else:
                cas_res = 2  # badval
            bits = 0
            if mode == ADD:
                # memcached: "add only adds a nonexistent item, but promote to head of LRU"
                # (do_item_update: no FETCHED mark)
                st.touch_order(key)
                if old.time < now - 60:
                    old.time = now
                return R_NOT_STORED, None
            if mode == CAS:
                if cas_res == 1:
                    st.cas_hits += 1
                elif cas_res == 3:
                    exptime = old.exptime
                    bits = STALE | (old.bits & TOKEN_SENT)
                    st.cas_hits += 1
                else:
                    st.cas_badval += 1
                    return R_EXISTS, None
            elif mode in (APPEND, PREPEND):
                if cas_res not in (0, 1):
                    return R_EXISTS, None
                old_value = old.value
                value = old_value + value if mode == APPEND else value + old_value
                flags = old.flags
                exptime = old.exptime
                if st.item_too_large(key, flags, len(value)):
                    return R_NOT_STORED, None
            it = Item(make_data(flags, value), exptime, now)
            it.bits = bits
            if not st.link(key, it, now):
                st.store_no_memory += 1
                return R_NO_MEMORY, None
            return R_STORED, it
        if mode == CAS:
            st.cas_misses += 1
            return R_NOT_FOUND, None
        if mode in (SET, ADD):
            it = Item(make_data(flags, value), exptime, now)
            if not st.link(key, it, now):
                st.store_no_memory += 1
                return R_NO_MEMORY, None
            return R_STORED, it
        return R_NOT_STORED, None

    def _store(self, ev: Store, now: int) -> bytes:
        st = self.state
        data = ev.data
        # memcached_size() > max_item_bytes, inlined (the set hot path)
        if data is None or (
            59 + len(ev.key) + ev.size + (4 if ev.flags else 0) > st.max_item_bytes
        ):
            st.store_too_large += 1
            if ev.mode == SET:
                st.unlink(ev.key)  # memcached: never leave the stale value behind
            return b"" if ev.noreply else proto.TOO_LARGE
        st.cmd_set += 1
        key = ev.key
        mrc = self.mrc
        if mrc is not None:
            h = crc32(key) & _MRC_MASK
            if h < mrc.threshold:
                mrc._sampled(key, h, read=False)
        exptime = st.realtime(ev.exptime, now) if ev.exptime else 0
        if ev.mode == SET:
            # fast path: a plain set replaces whatever is there (after the lookup memcached's
            # do_store_item makes, which counts an expired or flushed old item)
            old = st.items.get(key)
            if old is not None and (
                (old.exptime and old.exptime <= now) or (st.oldest_live and st._flushed(old, now))
            ):
                st.peek(key, now)
            if not st.link(key, Item(make_data(ev.flags, data), exptime, now), now):
                st.store_no_memory += 1
                return b"" if ev.noreply else proto.OUT_OF_MEMORY
            return b"" if ev.noreply else STORED
        result, _ = self.store(ev.mode, key, ev.flags, exptime, data, ev.cas_unique, now)
        if ev.noreply:
            return b""
        return _TEXT_RESULT[result]

    def _bad_chunk(self, ev: BadChunk, now: int) -> bytes:
        self.state.cmd_set += 1
        return b"" if ev.noreply else proto.BAD_CHUNK

    # -- delete / arithmetic / touch / flush -----------------------------------------------------
    def _delete(self, ev: Delete, now: int) -> bytes:
        st = self.state
        it = st.peek(ev.key, now)
        if it is None:
            st.delete_misses += 1
            return b"" if ev.noreply else NOT_FOUND
        st.delete_hits += 1
        st.unlink(ev.key)
        return b"" if ev.noreply else b"DELETED\r\n"

    def add_delta(
        self, key: bytes, incr: bool, delta: int, cas_in: int, now: int
    ) -> tuple[str, Item | None, bytes]:
        """memcached's ``do_add_delta``: ("ok"|"non_numeric"|"not_found"|"exists", item, text)."""
        st = self.state
        it = st.peek(key, now)
        if it is None:
            return "not_found", None, b""
        d = it.data
        hl = d.index(b"\n") + 1
        nbytes = len(d) - hl  # includes the trailing CRLF, like memcached's it->nbytes
        if nbytes <= 2:
            return "non_numeric", it, b""
        if cas_in and it.cas != cas_in:
            return "exists", it, b""
        value = strtoull(d[hl:])
        if value is None:
            return "non_numeric", it, b""
        if incr:
            value = (value + delta) & _U64
            st.incr_hits += 1
        else:
            value = value - delta if delta <= value else 0
            st.decr_hits += 1
        text = b"%d" % value
        if len(text) + 2 <= nbytes:
            # in place: pad with spaces, keep length, new CAS
            new_value = text + b" " * (nbytes - 2 - len(text))
            st.replace_data(key, it, d[:hl] + new_value + b"\r\n")
            it.cas = st.next_cas()
            if it.time < now - 60:
                it.time = now
            st.touch_order(key)
            return "ok", it, text
        flags = it.flags
        new = Item(make_data(flags, text), it.exptime, now)
        new.bits = it.bits
        if not st.link(key, new, now):
            return "no_memory", None, b""
        return "ok", new, text

    def _arith(self, ev: Arith, now: int) -> bytes:
        st = self.state
        status, _, text = self.add_delta(ev.key, ev.incr, ev.delta, 0, now)
        if status == "ok":
            reply = text + b"\r\n"
        elif status == "non_numeric":
            reply = proto.NON_NUMERIC
        elif status == "no_memory":
            reply = b"SERVER_ERROR out of memory\r\n"
        else:
            if ev.incr:
                st.incr_misses += 1
            else:
                st.decr_misses += 1
            reply = NOT_FOUND
        return b"" if ev.noreply else reply

    def _touch(self, ev: Touch, now: int) -> bytes:
        st = self.state
        it = st.fetch(ev.key, now)
        st.cmd_touch += 1
        if it is None:
            st.touch_misses += 1
            return b"" if ev.noreply else NOT_FOUND
        it.exptime = st.realtime(ev.exptime, now)
        st.touch_hits += 1
        return b"" if ev.noreply else b"TOUCHED\r\n"

    def _flush(self, ev: FlushAll, now: int) -> bytes:
        if not self.flush_enabled:
            self.state.cmd_flush += 1
            return b"" if ev.noreply else b"CLIENT_ERROR flush_all not allowed\r\n"
        if ev.error:
            self.state.cmd_flush += 1
            return b"" if ev.noreply else ev.error
        self.state.flush_all(ev.delay, now)
        return b"" if ev.noreply else b"OK\r\n"

    def _simple(self, ev: Simple, now: int) -> bytes:
        if ev.name == "version":
            return b"VERSION " + VERSION + b"\r\n"
        if ev.name == "quit":
            raise Quit
        if ev.name == "cache_memlimit":
            self.state.set_memory_limit(max(ev.arg, 8) * 1024 * 1024, now)
        elif ev.name == "verbosity":
            self.verbosity = min(ev.arg, 2)  # memcached: MAX_VERBOSITY_LEVEL
        return b"" if ev.noreply else b"OK\r\n"

    # -- meta ------------------------------------------------------------------------------------
    def _meta(self, ev: Meta, now: int) -> bytes:
        st = self.state
        c = ev.cmd
        if c == b"n":
            return b"MN\r\n"
        if c == b"g":
            return self._mg(ev, now)
        if c == b"s":
            return self._ms(ev, now)
        if c == b"d":
            return self._md(ev, now)
        if c == b"a":
            return self._ma(ev, now)
        st.cmd_meta += 1  # memcached 1.6.18 counts only "me" in cmd_meta
        return self._me(ev, now)

    @staticmethod
    def _ret_key(f: MetaFlags, key: bytes) -> bytes:
        if f.base64:
            return b" k" + proto.b64encode_key(key) + b" b"
        return b" k" + key

    def _echo(self, f: MetaFlags, key: bytes) -> bytes:
        """Opaque and key flags, echoed on misses and errors-free non-hit codes."""
        out = b""
        for tok in f.tokens:
            o = tok[0]
            if o == 79:  # O
                out += b" " + tok
            elif o == 107:  # k
                out += self._ret_key(f, key)
        return out

    def _mg(self, ev: Meta, now: int) -> bytes:
        st = self.state
        f = ev.flags
        key = ev.key
        if self._observing:
            self._observe([key])
        it = st.peek(key, now)
        created = False
        if it is None and f.vivify_ttl is not None:
            it = Item(make_data(0, b""), 0, now)
            if st.link(key, it, now):
                created = True
            else:
                it = None
        if it is None:
            st.cmd_get += 1
            st.get_misses += 1
            if f.opaque_too_long:
                return proto.OPAQUE_TOO_LONG
            if f.quiet:
                return b""
            return b"EN" + self._echo(f, key) + b"\r\n"
        if f.opaque_too_long:
            return proto.OPAQUE_TOO_LONG
        data = it.data
        hl = data.index(b"\n") + 1
        nbytes = len(data) - hl - 2
        parts = [b"VA %d" % nbytes if f.value else b"HD"]
        won = False
        ttl_set = False
        for tok in f.tokens:
            o = tok[0]
            if o == 84:  # T
                ttl_set = True
                assert f.ttl is not None
                it.exptime = st.realtime(f.ttl, now)
            elif o == 78:  # N
                if created:
                    assert f.vivify_ttl is not None
                    it.exptime = st.realtime(f.vivify_ttl, now)
                    won = True
            elif o == 82:  # R
                assert f.recache_ttl is not None
                if (
                    not it.bits & TOKEN_SENT
                    and not created
                    and it.exptime != 0
                    and it.exptime < st.realtime(f.recache_ttl, now)
                ):
                    won = True
            elif o == 115:  # s
                parts.append(b" s%d" % nbytes)
            elif o == 116:  # t
                parts.append(b" t-1" if it.exptime == 0 else b" t%d" % st.ttl_left(it, now))
            elif o == 99:  # c
                parts.append(b" c%d" % it.cas)
            elif o == 102:  # f
                parts.append(b" f%d" % it.flags)
            elif o == 108:  # l
                parts.append(b" l%d" % (now - it.time))
            elif o == 104:  # h
                parts.append(b" h1" if it.bits & FETCHED else b" h0")
            elif o == 79:  # O
                parts.append(b" " + tok)
            elif o == 107:  # k
                parts.append(self._ret_key(f, key))
        if it.bits & TOKEN_SENT:
            parts.append(b" Z")
        if it.bits & STALE:
            parts.append(b" X")
            if not it.bits & TOKEN_SENT:
                won = True
        if won:
            parts.append(b" W")
            it.bits |= TOKEN_SENT
        parts.append(b"\r\n")
        if f.value:
            parts.append(data[hl:])
        if not f.no_update:
            st.bump(key, it, now)
        # memcached 1.6.18 counts a hit (also a vivified miss, also with u) as a touch when
        # T was given, else as a get
        if ttl_set:
            st.cmd_touch += 1
            st.touch_hits += 1
        else:
            st.get_hits += 1
            st.cmd_get += 1
        return b"".join(parts)

    def _ms(self, ev: Meta, now: int) -> bytes:
        st = self.state
        f = ev.flags
        key = ev.key
        data = ev.data
        if data is None or st.item_too_large(key, f.client_flags, ev.size):
            st.store_too_large += 1
            st.unlink(key)
            return proto.TOO_LARGE
        st.cmd_set += 1
        if self.mrc is not None:
            self.mrc.update(key)
        mode = {0: SET, 83: SET, 69: ADD, 65: APPEND, 80: PREPEND, 82: REPLACE}[f.mode]
        if f.cas is not None and mode in (SET, REPLACE):
            mode = CAS
        exptime = st.realtime(f.ttl, now) if f.ttl is not None else 0
        result, it = self.store(
            mode, key, f.client_flags, exptime, data, f.cas or 0, now, set_stale=f.invalidate
        )
        if result == R_NO_MEMORY:
            return proto.OUT_OF_MEMORY
        if result == R_STORED and f.quiet:
            return b""
        out = [_META_RESULT[result]]
        for tok in f.tokens:
            o = tok[0]
            if o == 79:
                out.append(b" " + tok)
            elif o == 107:
                out.append(self._ret_key(f, key))
            elif o == 99:
                out.append(b" c%d" % (it.cas if it is not None else 0))
        out.append(b"\r\n")
        return b"".join(out)

    def _md(self, ev: Meta, now: int) -> bytes:
        st = self.state
        f = ev.flags
        key = ev.key
        echo = self._echo(f, key)
        it = st.peek(key, now)
        if it is None:
            st.delete_misses += 1
            return b"NF" + echo + b"\r\n"
        if f.cas is not None and it.cas != f.cas:
            st.delete_misses += 1
            return b"EX" + echo + b"\r\n"
        if f.invalidate:
            if f.ttl is not None:
                it.exptime = st.realtime(f.ttl, now)
            it.bits = (it.bits | STALE) & ~TOKEN_SENT
            it.cas = st.next_cas()
        else:
            st.delete_hits += 1
            st.unlink(key)
        if f.quiet:
            return b""
        return b"HD" + echo + b"\r\n"

    def _ma(self, ev: Meta, now: int) -> bytes:
        st = self.state
        f = ev.flags
        key = ev.key
        incr = f.mode in (0, 73, 105, 43)
        status, it, text = self.add_delta(key, incr, f.delta, f.cas or 0, now)
        created = False
        code = b""
        if status == "non_numeric":
            return proto.NON_NUMERIC
        if status == "no_memory":
            return b"SERVER_ERROR out of memory\r\n"
        if status == "exists":
            if f.opaque_too_long:
                return proto.OPAQUE_TOO_LONG
            return b"EX" + self._echo(f, key) + b"\r\n"
        if status == "not_found":
            if f.vivify_ttl is not None:
                text = b"%d" % f.initial
                it = Item(make_data(0, text), 0, now)
                if st.link(key, it, now):
                    created = True
                else:
                    it = None
                    code = b"NS"
            else:
                if incr:
                    st.incr_misses += 1
                else:
                    st.decr_misses += 1
                if f.opaque_too_long:
                    return proto.OPAQUE_TOO_LONG
                return b"NF" + self._echo(f, key) + b"\r\n"
        if f.opaque_too_long:
            return proto.OPAQUE_TOO_LONG
        if it is None:
            return code + self._echo(f, key) + b"\r\n"
        parts = [b"VA %d" % len(text) if f.value else b"HD"]
        for tok in f.tokens:
            o = tok[0]
            if o == 99:
                parts.append(b" c%d" % it.cas)
            elif o == 116:
                parts.append(b" t-1" if it.exptime == 0 else b" t%d" % st.ttl_left(it, now))
            elif o == 84:
                assert f.ttl is not None
                it.exptime = st.realtime(f.ttl, now)
            elif o == 78:
                if created:
                    assert f.vivify_ttl is not None
                    it.exptime = st.realtime(f.vivify_ttl, now)
            elif o == 79:
                parts.append(b" " + tok)
            elif o == 107:
                parts.append(self._ret_key(f, key))
        if f.quiet and not created:
            return b""  # q hides the nominal reply of an update (memcached: not a creation)
        parts.append(b"\r\n")
        if f.value:
            parts.append(text + b"\r\n")
        return b"".join(parts)

    def _me(self, ev: Meta, now: int) -> bytes:
        st = self.state
        key = ev.key
        it = st.peek(key, now)
        if it is None:
            return b"EN\r\n"
        # memcached 1.6.18 prints current_time - exptime here (negative while alive)
        exp = -1 if it.exptime == 0 else st.rel_time(now) - st.rel_time(it.exptime)
        data = it.data
        nbytes = len(data) - data.index(b"\n") - 1 - 2
        size = memcached_size(key, it.flags, nbytes)
        shown = proto.b64encode_key(key) if ev.flags.base64 else key
        return b"ME %s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\r\n" % (
            shown, exp, now - it.time, it.cas, b"yes" if it.bits & FETCHED else b"no",
            slab_class(size), size,
        )  # fmt: skip

    # -- key dump --------------------------------------------------------------------------------
    def _dump(self, ev: Dump, now: int) -> StreamReply:
        if ev.error:
            return StreamReply(iter((ev.error,)))
        return self._metadump(ev, now)

    def _metadump(self, ev: Dump, now: int) -> StreamReply:
        """``lru_crawler metadump``: one line per live item, oldest first, then END.

        Keys are listed from a snapshot of the key set taken now (8 bytes per key); items
        deleted or expired meanwhile are skipped. Lines are written in 64 kB chunks."""
        st = self.state
        keys = list(st.items)
        classes = ev.classes

        def lines() -> Iterator[bytes]:
            out: list[bytes] = []
            size = 0
            items = st.items
            for key in keys:
                it = items.get(key)
                if it is None or (it.exptime and it.exptime <= now) or st._flushed(it, now):
                    continue
                d = it.data
                nbytes = len(d) - d.index(b"\n") - 3
                msize = memcached_size(key, it.flags, nbytes)
                cls = slab_class(msize)
                if classes is not None and cls not in classes:
                    continue
                line = b"key=%s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\n" % (
                    quote(key, safe="").encode(), it.exptime or -1, it.time, it.cas,
                    b"yes" if it.cb & FETCHED else b"no", cls, msize,
                )  # fmt: skip
                out.append(line)
                size += len(line)
                if size >= 65536:
                    yield b"".join(out)
                    out = []
                    size = 0
            out.append(END)
            yield b"".join(out)

        return StreamReply(lines())

    # -- stats -------------------------------------------------------------------------------------
    def _stats(self, ev: Stats, now: int) -> bytes:
        args = ev.args
        if not args:
            return _stat_lines(self.general_stats(now))
        sub = args[0]
        if sub == b"reset":
            self.state.reset_counters()
            return b"RESET\r\n"
        if sub == b"settings":
            return _stat_lines(self.settings())
        if sub == b"items":
            return _stat_lines(self.items_stats(now))
        if sub == b"slabs":
            return _stat_lines(self.slabs_stats())
        if sub == b"cachedump":
            return self._cachedump(args, now)
        if sub == b"sizes":
            return _stat_lines([("sizes_status", "disabled")])
        if sub == b"conns":
            return _stat_lines(self.conns_stats())
        if sub == b"detail":
            if len(args) < 2 or args[1] not in (b"on", b"off", b"dump"):
                return proto.STATS_DETAIL_USAGE
            if args[1] == b"dump":
                return END
            return b"OK\r\n"
        if sub == b"mrc" and self.mrc is not None:
            st = self.state
            per_item = st.bytes / len(st.items) if st.items else 0.0
            return _stat_lines(self.mrc.stats_lines(per_item))
        if sub == b"hotkeys" and self.hotkeys is not None:
            return _stat_lines(self.hotkeys.stats_lines())
        return proto.ERROR

    def _cachedump(self, args: list[bytes], now: int) -> bytes:
        """``stats cachedump <class> <limit>``: ``ITEM <key> [<bytes> b; <exptime> s]`` lines,
        most recently used first, at most ``limit`` (0 = no limit) and 2 MB, as memcached
        (which shows only its COLD segment; there are no segments here)."""
        if len(args) < 3:
            return b"CLIENT_ERROR bad command line\r\n"
        cls = proto.strtoul32(args[1])
        limit = proto.strtoul32(args[2])
        if cls is None or limit is None:
            return proto.BAD_FORMAT
        if cls >= 64:  # MAX_NUMBER_OF_SLAB_CLASSES
            return b"CLIENT_ERROR Illegal slab id\r\n"
        st = self.state
        out: list[bytes] = []
        size = 0
        for key in reversed(st.items):
            it = st.items[key]
            if (it.exptime and it.exptime <= now) or st._flushed(it, now):
                continue
            d = it.data
            nbytes = len(d) - d.index(b"\n") - 3
            if slab_class(memcached_size(key, it.flags, nbytes)) != cls:
                continue
            line = b"ITEM %s [%d b; %d s]\r\n" % (key, nbytes, it.exptime)
            if size + len(line) + 6 > 2 * 1024 * 1024:  # memcached's 2 MB cap
                break
            out.append(line)
            size += len(line)
            if limit and len(out) >= limit:
                break
        out.append(END)
        return b"".join(out)

    def general_stats(self, now: int) -> list[tuple[str, object]]:
        st = self.state
        server = dict(self.server_stats())

        def srv(name: str, default: object = 0) -> tuple[str, object]:
            return (name, server.get(name, default))

        return [
            ("pid", os.getpid()),
            ("uptime", now - st.started),
            ("time", now),
            ("version", VERSION.decode()),
            ("libevent", "asyncio"),
            ("pointer_size", 64),
            srv("rusage_user", "0.000000"),
            srv("rusage_system", "0.000000"),
            srv("max_connections"),
            srv("curr_connections"),
            srv("total_connections"),
            srv("rejected_connections"),
            srv("connection_structures"),
            ("response_obj_oom", 0),
            ("response_obj_count", 0),
            ("response_obj_bytes", 0),
            ("read_buf_count", 0),
            ("read_buf_bytes", 0),
            ("read_buf_bytes_free", 0),
            ("read_buf_oom", 0),
            ("reserved_fds", 0),
            ("cmd_get", st.cmd_get),
            ("cmd_set", st.cmd_set),
            ("cmd_flush", st.cmd_flush),
            ("cmd_touch", st.cmd_touch),
            ("cmd_meta", st.cmd_meta),
            ("get_hits", st.get_hits),
            ("get_misses", st.get_misses),
            ("get_expired", st.get_expired),
            ("get_flushed", st.get_flushed),
            ("delete_misses", st.delete_misses),
            ("delete_hits", st.delete_hits),
            ("incr_misses", st.incr_misses),
            ("incr_hits", st.incr_hits),
            ("decr_misses", st.decr_misses),
            ("decr_hits", st.decr_hits),
            ("cas_misses", st.cas_misses),
            ("cas_hits", st.cas_hits),
            ("cas_badval", st.cas_badval),
            ("touch_hits", st.touch_hits),
            ("touch_misses", st.touch_misses),
            ("store_too_large", st.store_too_large),
            ("store_no_memory", st.store_no_memory),
            ("auth_cmds", 0),
            ("auth_errors", 0),
            srv("bytes_read"),
            srv("bytes_written"),
            ("limit_maxbytes", st.max_memory_bytes),
            srv("accepting_conns", 1),
            srv("listen_disabled_num"),
            ("time_in_listen_disabled_us", 0),
            ("threads", 1),
            ("conn_yields", 0),
            ("hash_power_level", 16),
            ("hash_bytes", 0),
            ("hash_is_expanding", 0),
            ("slab_reassign_rescues", 0),
            ("slab_reassign_chunk_rescues", 0),
            ("slab_reassign_evictions_nomem", 0),
            ("slab_reassign_inline_reclaim", 0),
            ("slab_reassign_busy_items", 0),
            ("slab_reassign_busy_deletes", 0),
            ("slab_reassign_running", 0),
            ("slabs_moved", 0),
            ("lru_crawler_running", 0),
            ("lru_crawler_starts", 0),
            ("lru_maintainer_juggles", 0),
            ("malloc_fails", 0),
            ("log_worker_dropped", 0),
            ("log_worker_written", 0),
            ("log_watcher_skipped", 0),
            ("log_watcher_sent", 0),
            ("log_watchers", 0),
            ("unexpected_napi_ids", 0),
            ("round_robin_fallback", 0),
            ("bytes", st.bytes),
            ("curr_items", len(st.items)),
            ("total_items", st.total_items),
            ("slab_global_page_pool", 0),
            ("expired_unfetched", st.expired_unfetched),
            ("evicted_unfetched", st.evicted_unfetched),
            ("evicted_active", st.evicted_active),
            ("evictions", st.evictions),
            ("reclaimed", st.reclaimed),
            ("crawler_reclaimed", st.crawler_reclaimed),
            ("crawler_items_checked", st.crawler_items_checked),
            ("lrutail_reflocked", 0),
            ("moves_to_cold", 0),
            ("moves_to_warm", 0),
            ("moves_within_lru", 0),
            ("direct_reclaims", 0),
            ("lru_bumps_dropped", 0),
        ]

    def items_stats(self, now: int) -> list[tuple[str, object]]:
        """One pseudo slab class (1) holding every item: there are no slab classes here."""
        st = self.state
        if not st.items:
            return []
        oldest = next(iter(st.items.values()))
        p = "items:1:"
        return [
            (p + "number", len(st.items)),
            (p + "number_hot", 0),
            (p + "number_warm", 0),
            (p + "number_cold", len(st.items)),
            (p + "age_hot", 0),
            (p + "age_warm", 0),
            (p + "age", max(0, now - oldest.time)),
            (p + "mem_requested", st.bytes),
            (p + "evicted", st.evictions),
            (p + "evicted_nonzero", 0),
            (p + "evicted_time", 0),
            (p + "outofmemory", st.store_no_memory),
            (p + "tailrepairs", 0),
            (p + "reclaimed", st.reclaimed),
            (p + "expired_unfetched", st.expired_unfetched),
            (p + "evicted_unfetched", st.evicted_unfetched),
            (p + "evicted_active", 0),
            (p + "crawler_reclaimed", st.crawler_reclaimed),
            (p + "crawler_items_checked", st.crawler_items_checked),
            (p + "lrutail_reflocked", 0),
            (p + "moves_to_cold", 0),
            (p + "moves_to_warm", 0),
            (p + "moves_within_lru", 0),
            (p + "direct_reclaims", 0),
            (p + "hits_to_hot", 0),
            (p + "hits_to_warm", 0),
            (p + "hits_to_cold", st.get_hits),
            (p + "hits_to_temp", 0),
        ]

    def slabs_stats(self) -> list[tuple[str, object]]:
        """One pseudo slab class holding every item (there are no slab classes here)."""
        st = self.state
        lines: list[tuple[str, object]] = []
        n = len(st.items)
        if n:
            lines += [
                ("1:chunk_size", st.bytes // n),
                ("1:chunks_per_page", 0),
                ("1:total_pages", 0),
                ("1:total_chunks", n),
                ("1:used_chunks", n),
                ("1:free_chunks", 0),
                ("1:free_chunks_end", 0),
                ("1:get_hits", st.get_hits),
                ("1:cmd_set", st.cmd_set),
                ("1:delete_hits", st.delete_hits),
                ("1:incr_hits", st.incr_hits),
                ("1:decr_hits", st.decr_hits),
                ("1:cas_hits", st.cas_hits),
                ("1:cas_badval", st.cas_badval),
                ("1:touch_hits", st.touch_hits),
            ]
        lines += [("active_slabs", 1 if n else 0), ("total_malloced", st.bytes)]
        return lines


def _stat_lines(lines: list[tuple[str, object]]) -> bytes:
    out = [b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in lines]
    out.append(END)
    return b"".join(out)
