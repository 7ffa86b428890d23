"""Pure cache state: one exact LRU over every item, expiry and flush with time passed in.

No slab classes: one plain ``dict`` kept in recency order (oldest first; a hit re-inserts the
key at the end), so memory freed by any item is usable by any other (no slab calcification).
Eviction takes the oldest keys from the front of the dict in small batches: a dict iterator has
to step over the holes that deletions leave at the front, and batching keeps that cost per
eviction small. A plain dict costs ~45 B per item where an OrderedDict costs ~115 B.

Memory is counted per item as an honest estimate of what CPython really spends on it
(``ITEM_OVERHEAD_BYTES`` + key + stored data), not memcached's header arithmetic;
``memcached_size()`` gives the memcached figure for ``me``.

Times are integer seconds (Unix time) passed in by the caller; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

# Measured on CPython 3.11 / x86-64 (benchmarks/cache, docs/cache.md): the Item object with 4
# slots (64 B incl. GC header), its CAS int (32 B), the dict entry and index (~45 B resident),
# the two bytes-object headers of key and data (2 x 33 B) and pymalloc's rounding (~20 B).
ITEM_OVERHEAD_BYTES = 230

REALTIME_MAXDELTA = 60 * 60 * 24 * 30  # memcached: exptimes above 30 days are absolute
ITEM_UPDATE_INTERVAL = 60  # memcached: an item's access time is bumped at most once a minute

FETCHED = 1
STALE = 2
TOKEN_SENT = 4


class Item:
    """One cached value, in four slots (64 bytes with CPython's object and GC headers).

    ``data`` is the stored wire suffix ``b" <flags> <len>\\r\\n<value>\\r\\n"``, so that a get
    reply is just ``VALUE <key>`` + data (and the client flags need no slot of their own).
    ``cb`` packs the CAS value and the FETCHED/STALE/TOKEN_SENT bits into one int:
    ``cas << 3 | bits``. ``time`` is the last access (bumped at most once a minute, as
    memcached does), ``exptime`` absolute Unix seconds or 0.
    """

    __slots__ = ("cb", "data", "exptime", "time")

    def __init__(self, data: bytes, exptime: int, time: int) -> None:
        self.data = data
        self.exptime = exptime
        self.time = time
        self.cb = 0

    @property
    def cas(self) -> int:
        return self.cb >> 3

    @cas.setter
    def cas(self, value: int) -> None:
        self.cb = (value << 3) | (self.cb & 7)

    @property
    def bits(self) -> int:
        return self.cb & 7

    @bits.setter
    def bits(self, value: int) -> None:
        self.cb = (self.cb & ~7) | value

    @property
    def flags(self) -> int:
        d = self.data
        return int(d[1 : d.index(b" ", 1)])

    @property
    def value(self) -> bytes:
        d = self.data
        return d[d.index(b"\n") + 1 : -2]


def make_data(flags: int, value: bytes) -> bytes:
    return b" %d %d\r\n%b\r\n" % (flags, len(value), value)


def memcached_size(key: bytes, flags: int, nbytes: int) -> int:
    """memcached 1.6.18's ``ITEM_ntotal``: 48 B header + 8 B CAS + key + 1 + value + 2
    (+ 4 when flags are non-zero)."""
    return 48 + 8 + len(key) + 1 + nbytes + 2 + (4 if flags else 0)


def slab_class(size: int) -> int:
    """memcached's slab class for an item of ``size`` bytes (-n 48, -f 1.25, 8-byte aligned)."""
    chunk = 96
    cls = 1
    while chunk < size and chunk < 512 * 1024:
        chunk = int(chunk * 1.25)
        chunk += (8 - chunk % 8) % 8
        cls += 1
    return cls


def item_cost(key: bytes, data: bytes) -> int:
    return ITEM_OVERHEAD_BYTES + len(key) + len(data)


class CacheState:
    """Items, LRU order, memory accounting, CAS counter, flush state and memcached's counters.

    ``max_memory_bytes``: like memcached ``-m`` (default 64 MiB), counted with ``item_cost``.
    ``max_item_bytes``: like ``-I`` (default 1 MiB), checked with memcached's own item size
    formula so that the same values fit as in memcached.
    ``started``: Unix time the server started (memcached's ``process_started``).
    """

    def __init__(
        self,
        *,
        max_memory_bytes: int = 64 * 1024 * 1024,
        max_item_bytes: int = 1024 * 1024,
        evictions_enabled: bool = True,  # memcached -M turns evictions off
        started: int = 0,
        evict_slack_bytes: int | None = None,
    ) -> None:
        self.items: dict[bytes, Item] = {}
        # when full, free this much beyond what the new item needs (default 1/512 of memory):
        # exact LRU order, evictions amortised over one scan of the dict's front; 0 = exact fill
        self.evict_slack_bytes = (
            max_memory_bytes // 512 if evict_slack_bytes is None else evict_slack_bytes
        )
        self.max_memory_bytes = max_memory_bytes
        self.max_item_bytes = max_item_bytes
        self.evictions_enabled = evictions_enabled
        self.started = started
        self.bytes = 0
        self.last_cas = 0
        self.oldest_live = 0  # flush_all: items with time <= this are dead once it has passed
        self.oldest_cas = 0  # flush_all: items with a CAS below this are dead
        # memcached counters (names as in "stats")
        self.cmd_get = 0
        self.cmd_set = 0
        self.cmd_flush = 0
        self.cmd_touch = 0
        self.cmd_meta = 0
        self.get_hits = 0
        self.get_misses = 0
        self.get_expired = 0
        self.get_flushed = 0
        self.delete_hits = 0
        self.delete_misses = 0
        self.incr_hits = 0
        self.incr_misses = 0
        self.decr_hits = 0
        self.decr_misses = 0
        self.cas_hits = 0
        self.cas_misses = 0
        self.cas_badval = 0
        self.touch_hits = 0
        self.touch_misses = 0
        self.store_too_large = 0
        self.store_no_memory = 0
        self.total_items = 0
        self.evictions = 0
        self.evicted_unfetched = 0
        self.evicted_active = 0
        self.expired_unfetched = 0
        self.reclaimed = 0
        self.crawler_reclaimed = 0
        self.crawler_items_checked = 0

    # -- time ----------------------------------------------------------------------------------
    def realtime(self, exptime: int, now: int) -> int:
        """memcached's ``realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`` as absolute Unix time.

        0 = never; negative = already expired; <= 30 days relative; larger = absolute."""
        if exptime == 0:
            return 0
        if exptime < 0:
            return 1
        if exptime > REALTIME_MAXDELTA:
            return exptime if exptime > self.started else 1
        return now + exptime

    def rel_time(self, t: int) -> int:
        """``t`` on memcached's relative clock (``current_time``: seconds since the process
        started, which memcached backdates by ITEM_UPDATE_INTERVAL + 2); the already-expired
        marker 1 stays 1, as memcached stores it."""
        return t if t <= 1 else t - (self.started - ITEM_UPDATE_INTERVAL - 2)

    def ttl_left(self, it: Item, now: int) -> int:
        """The ``t`` flag: seconds left, as memcached's unsigned 32-bit difference of
        relative times (so an already expired item shows a huge number, as there)."""
        left = self.rel_time(it.exptime) - self.rel_time(now)
        return left if left >= 0 else left & 0xFFFFFFFF

    def next_cas(self) -> int:
        self.last_cas += 1
        return self.last_cas

    # -- lookup --------------------------------------------------------------------------------
    def peek(self, key: bytes, now: int) -> Item | None:
        """The live item for ``key`` without LRU bump (memcached's ``do_item_get`` with
        DONT_UPDATE): a flushed or expired item found here is unlinked and counted in
        ``get_flushed`` / ``get_expired``, whatever command looked it up."""
        it = self.items.get(key)
        if it is None:
            return None
        if (it.exptime and it.exptime <= now) or (self.oldest_live and self._flushed(it, now)):
            self._drop_dead(key, it, now)
            return None
        return it

    def _drop_dead(self, key: bytes, it: Item, now: int) -> None:
        if self._flushed(it, now):
            self.get_flushed += 1
        else:
            self.get_expired += 1
        self._unlink(key, it)

    def _flushed(self, it: Item, now: int) -> bool:
        """memcached's item_is_flushed, with one fix: an item killed by an immediate flush
        (CAS below ``oldest_cas``) stays dead. memcached gates that test on ``oldest_live``
        too, so a later ``flush_all <delay>`` (oldest_live in the future) briefly brings
        flushed items its LRU maintainer has not reclaimed yet back to life."""
        if self.oldest_cas and it.cb >> 3 < self.oldest_cas:
            return True
        ol = self.oldest_live
        return ol != 0 and ol <= now and it.time <= ol

    def fetch(self, key: bytes, now: int) -> Item | None:
        """A get: ``peek`` then mark fetched and bump in the LRU. (The hot path: inlined.)"""
        items = self.items
        it = items.get(key)
        if it is None:
            return None
        if (it.exptime and it.exptime <= now) or (self.oldest_live and self._flushed(it, now)):
            self._drop_dead(key, it, now)
            return None
        del items[key]
        items[key] = it
        if not it.cb & FETCHED:
            it.cb |= FETCHED
        if it.time < now - ITEM_UPDATE_INTERVAL:
            it.time = now
        return it

    def bump(self, key: bytes, it: Item, now: int) -> None:
        if not it.cb & FETCHED:
            it.cb |= FETCHED
        items = self.items
        del items[key]
        items[key] = it
        if it.time < now - ITEM_UPDATE_INTERVAL:
            it.time = now

    def touch_order(self, key: bytes) -> None:
        """Move ``key`` to the most recent end of the LRU."""
        items = self.items
        items[key] = items.pop(key)

    # -- mutation ------------------------------------------------------------------------------
    def _unlink(self, key: bytes, it: Item) -> None:
        del self.items[key]
        self.bytes -= item_cost(key, it.data)

    def unlink(self, key: bytes) -> bool:
        it = self.items.get(key)
        if it is None:
            return False
        self._unlink(key, it)
        return True

    def item_too_large(self, key: bytes, flags: int, nbytes: int) -> bool:
        return memcached_size(key, flags, nbytes) > self.max_item_bytes

    def link(self, key: bytes, it: Item, now: int) -> bool:
        """Insert or replace ``key`` with ``it`` (assigning a new CAS); evicts LRU items to make
        room. False when the item cannot fit (out of memory)."""
        klen = ITEM_OVERHEAD_BYTES + len(key)  # item_cost(), inlined: the set hot path
        cost = klen + len(it.data)
        items = self.items
        old = items.get(key)
        if old is not None:
            self.bytes -= klen + len(old.data)
            del items[key]
        if self.bytes + cost > self.max_memory_bytes and not self._make_room(cost, now):
            return False
        self.last_cas += 1
        it.cb = (self.last_cas << 3) | (it.cb & 7)
        items[key] = it
        self.bytes += cost
        self.total_items += 1
        return True

    def _make_room(self, cost: int, now: int) -> bool:
        """Evict from the LRU end until ``cost`` more bytes fit (plus the slack)."""
        limit = self.max_memory_bytes
        if not self.evictions_enabled or cost > limit:
            return False
        target = max(0, limit - cost - self.evict_slack_bytes)
        items = self.items
        while self.bytes > target and items:
            for key in list(islice(items, 64)):  # one scan of the front per 64 victims
                self._evict(key, items.pop(key), now)
                if self.bytes <= target:
                    break
        return True

    def _evict(self, key: bytes, it: Item, now: int) -> None:
        self.bytes -= item_cost(key, it.data)
        if (it.exptime and it.exptime <= now) or self._flushed(it, now):
            self.reclaimed += 1
            if not it.cb & FETCHED:
                self.expired_unfetched += 1
        else:
            self.evictions += 1
            if not it.cb & FETCHED:
                self.evicted_unfetched += 1

    def replace_data(self, key: bytes, it: Item, data: bytes) -> None:
        """Change an item's data in place (incr/decr), keeping its LRU position."""
        self.bytes += len(data) - len(it.data)
        it.data = data

    def flush_all(self, delay: int, now: int) -> None:
        """memcached's flush_all: items not updated since the flush time are dead from then on.

        Like memcached, memory is reclaimed lazily (on lookup, by the expiry crawler, or at the
        LRU tail when room is needed), and ``get_flushed`` counts lookups that find one."""
        new_oldest = self.realtime(delay, now) if delay > 0 else now
        self.oldest_live = new_oldest - 1
        if self.oldest_live <= now:
            self.oldest_cas = self.next_cas()
        self.cmd_flush += 1

    def set_memory_limit(self, max_memory_bytes: int, now: int) -> None:
        self.max_memory_bytes = max_memory_bytes
        self.evict_slack_bytes = min(self.evict_slack_bytes, max_memory_bytes // 512)
        if self.bytes > max_memory_bytes:
            self._make_room(0, now)

    def reap(self, keys: Iterable[bytes], now: int) -> int:
        """Crawler step: drop expired or flushed items among ``keys``; returns how many."""
        n = 0
        items = self.items
        for key in keys:
            it = items.get(key)
            if it is None:
                continue
            self.crawler_items_checked += 1
            if (it.exptime and it.exptime <= now) or self._flushed(it, now):
                self._unlink(key, it)
                self.crawler_reclaimed += 1
                if not it.cb & FETCHED:
                    self.expired_unfetched += 1
                n += 1
        return n

    def reset_counters(self) -> None:
        keep = {"bytes", "last_cas", "oldest_live", "oldest_cas", "total_items_base"}
        for name, value in list(vars(self).items()):
            if isinstance(value, int) and not isinstance(value, bool) and name not in keep and (
                name.startswith(("cmd_", "get_", "delete_", "incr_", "decr_", "cas_", "touch_",
                                 "store_", "evict", "expired_", "reclaimed", "crawler_"))
                or name == "total_items"
            ):  # fmt: skip
                setattr(self, name, 0)
