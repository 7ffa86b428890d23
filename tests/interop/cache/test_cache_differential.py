"""Differential test: identical byte streams to memcached 1.6.18 and to hastack, replies
compared byte for byte.

A get with a key over 250 bytes makes memcached 1.6.18 drop every reply of the same read
that was not yet sent (``conn_release_items``); hastack answers the earlier commands. So such
gets are only sent first in a write, and the generator keeps long keys out of gets. Listings
from ``lru_crawler metadump`` are not compared: memcached writes them from its crawler thread,
and racing it, a later command on the connection is sometimes refused ("cannot pipeline") or
not answered at all; only the error replies of malformed metadump lines are compared here, the
listing format is covered by hastack's own tests (and matched memcached's when checked by hand).

Normalised (and only these): CAS values are compared relative to a CAS read at the start of
each sequence (both servers number stores with one global counter, so equal semantics give
equal offsets); remaining-TTL / last-access numbers (``t``, ``l``, ``exp=``, ``la=``) are
rounded to 10 s because the two servers' one-second clocks tick at different moments.
"""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.peer

# Two empty lines (each answered ERROR) absorb the byte a data block announced one too long may
# still need, so the sentinel's own reply always arrives and no test waits on a timeout.
SENTINEL = b"\r\n\r\nmg __end__ k O7777\r\n"
SENTINEL_REPLY = b"EN k__end__ O7777\r\n"


# get_flushed and get_expired are left out: memcached's LRU maintainer thread reclaims flushed
# and expired items in the background at moments of its own (within milliseconds for an item
# stored already expired), so whether a later lookup still finds one to count is timing.
COUNTERS = (
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
)


_PART_ENDS = (b"END\r\n", b"STORED\r\n", b"BADCLASS invalid class id\r\n")


def _read_until(s: socket.socket, out: bytes, end: bytes) -> bytes:
    while not out.endswith(end):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed while waiting for {end!r}: {out[-200:]!r}")
        out += chunk
    return out


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, dict[str, int] | None]:
    """Send ``data`` + the sentinel, half-close, read everything until the server closes.

    Returns the normalised replies and the counters moved by ``data`` (None when the sentinel
    went unanswered: after ``quit``, or swallowed as data)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"flush_all\r\nset __base 0 0 1\r\nx\r\ngets __base\r\n")
        head = _read_until(s, b"", b"END\r\n")
        m = re.search(rb"VALUE __base 0 1 (\d+)", head)
        assert m is not None, head
        base = int(m.group(1))
        # "$CAS+n" in a sequence means "the CAS value of the n-th store after this point"
        data = re.sub(rb"\$CAS\+(\d+)", lambda c: b"%d" % (base + int(c.group(1))), data)
        s.sendall(b"delete __base\r\nstats reset\r\n")
        _read_until(s, b"", b"RESET\r\n")
        # "<SYNC>" splits a sequence into writes: each part's replies are read before the next
        # part is sent (a part must end with a command answered by one of _PART_ENDS)
        *parts, data = data.split(b"<SYNC>")
        head = b""
        for part in parts:
            s.sendall(part)
            got = b""
            while not got.endswith(_PART_ENDS):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(got)
                got += chunk
            head += got
        # then half-close: each server answers what it read and closes, so a sequence that
        # leaves a data block incomplete (the sentinel swallowed) ends at once, not by timeout
        s.sendall(data + SENTINEL)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    counters = None
    if out.endswith(SENTINEL_REPLY):
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"stats\r\n")
            stats = _read_until(s, b"", b"END\r\n")
        values = dict(re.findall(rb"STAT (\w+) (\S+)", stats))
        counters = {name: int(values[name.encode()]) for name in COUNTERS}
        counters["cmd_get"] -= 1  # the sentinel mg
        counters["get_misses"] -= 1
    return normalise(head + out, base), counters


_CAS_PATTERNS = [
    re.compile(rb"^(VALUE \S+ \d+ \d+ )(\d+)(?=\r$)", re.M),
    re.compile(rb"(?<=[ ])(c)(\d+)(?=[ \r])"),
    re.compile(rb"( cas=)(\d+)"),
]
_TIME_PATTERNS = [
    re.compile(rb"( exp=| la=)(\d{9,})"),  # absolute times (metadump): both become 0
    re.compile(rb"(?<=[ ])([tl])(-?\d+)(?=[ \r])"),
    re.compile(rb"( exp=| la=)(-?\d+)"),
]


_DUMP_BLOCK = re.compile(rb"(?:key=[^\n]*\n)+")


def normalise(out: bytes, base: int) -> bytes:
    def rel(m: re.Match[bytes]) -> bytes:
        cas = int(m.group(2))
        return m.group(1) + (b"%d" % (cas - base) if cas else b"0")

    def rounded(m: re.Match[bytes]) -> bytes:
        value = int(m.group(2))
        return m.group(1) + (b"0" if value >= 10**9 else b"%d" % round(value, -1))

    for p in _CAS_PATTERNS:
        out = p.sub(rel, out)
    for p in _TIME_PATTERNS:
        out = p.sub(rounded, out)
    # metadump lists items in LRU order; memcached's LRU is segmented (hot/warm/cold), ours is
    # one list, so the lines of a dump are compared as a set
    return _DUMP_BLOCK.sub(lambda m: b"".join(sorted(m.group(0).splitlines(True))), out)


def both(
    memcached_port: int, hastack_port: int, data: bytes
) -> tuple[tuple[bytes, dict[str, int] | None], tuple[bytes, dict[str, int] | None]]:
    return exchange(memcached_port, data), exchange(hastack_port, data)


HAND_WRITTEN = [
    b"get a b\r\n",
    b"set k 0 0 1\r\nx\r\nget k\r\ngets k\r\ncas k 0 0 1 1\r\ny\r\n",
    b"set k 0 0 1\r\nxx\r\n",
    b"set k x 0 1 noreply\r\nx\r\n",
    b"set k 0 0 1 2 3\r\nx\r\ncas k 0 0 1\r\nx\r\n",
    b"set lf 0 0 1\nx\r\nget lf\n",
    b"set sp  0  0  1\r\nx\r\nget sp\r\n",
    b"GET foo\r\nget\r\ngat\r\ntouch\r\nincr\r\nincr x\r\n\r\n",
    b"get " + b"k" * 251 + b"\r\nset " + b"k" * 251 + b" 0 0 1\r\nx\r\n",
    b"set n1 0 4294967297 1\r\nx\r\nget n1\r\nset n2 0 2147483648 1\r\nx\r\nget n2\r\n",
    b"set n4 +5 +0 +1\r\nx\r\ngets n4\r\nset n5 -0 -0 -0\r\n\r\nget n5\r\n",
    b"set n6 4294967296 0 1\r\nx\r\nget n6\r\nset n7 0 0 2147483646\r\n",
    b"set c 0 0 2\r\n10\r\ndecr c 3\r\nget c\r\nincr c 5\r\nset d 0 0 3\r\n 12\r\nincr d 1\r\n",
    b"set e 0 0 20\r\n18446744073709551615\r\nincr e 1\r\nget e\r\nincr e -1\r\nincr e x\r\n",
    b"incr e 18446744073709551616\r\nset f 0 0 1\r\nx\r\nincr f 1\r\nincr nope 1\r\n",
    b"set b 0 0 2000000\r\n" + b"z" * 2000002 + b"get b\r\nset b 0 0 1\r\nx\r\n"
    b"set b 0 0 2000000 noreply\r\n" + b"z" * 2000002 + b"get b\r\n",
    b"set big 0 0 1048514\r\n" + b"z" * 1048514 + b"\r\nset big 0 0 1048515\r\n"
    + b"z" * 1048515 + b"\r\nget big\r\n",
    b"delete a 0\r\ndelete a 5\r\ndelete a 0 noreply\r\ndelete a noreply\r\ndelete a x noreply\r\n"
    b"delete\r\ndelete a b c d\r\nset a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\n",
    b"verbosity 1 2\r\nverbosity\r\nverbosity x\r\nverbosity noreply\r\nversion x\r\n",
    b"flush_all 0 0\r\nflush_all -1\r\nflush_all noreply\r\nflush_all x\r\nflush_all x noreply\r\n",
    b"stats foo\r\nstats detail\r\nstats reset x\r\nstats sizes\r\nshutdown\r\n",
    b"cache_memlimit 100\r\ncache_memlimit\r\ncache_memlimit x\r\n",
    b"add a 0 0 1\r\nx\r\nadd a 0 0 1\r\ny\r\nreplace a 3 0 1\r\nz\r\nreplace q 0 0 1\r\nz\r\n"
    b"append a 9 9 2\r\nab\r\nprepend a 0 0 2\r\ncd\r\nappend q 0 0 1\r\nx\r\ngets a\r\n",
    b"touch nokey 10\r\nset t 0 0 1\r\nx\r\ntouch t 100\r\ngat 100 t nokey\r\ngats 0 t\r\n",
    b"touch t x\r\ngat x t\r\ntouch t 10 noreply\r\n",
    b"set x 0 -1 1\r\nx\r\nget x\r\nms y 1 T-1\r\nx\r\nmg y v\r\n",
    b"md nokey\r\nmd nokey O9 k\r\nset a 0 0 1\r\n1\r\nmd a\r\nmd a q\r\nmn\r\n",
    b"ma nokey\r\nma nokey O1 k\r\nma nokey N0 J10 v\r\nma nokey\r\nma nokey v t c\r\n"
    b"ma nokey MD D20 v\r\nma nokey MX\r\nma nokey q\r\nmn\r\n",
    b"mg nokey\r\nmg nokey v\r\nmg nokey q v\r\nmn\r\nms mk 2\r\nhi\r\nmg mk\r\nmg mk v\r\n"
    b"mg mk q\r\nmg mk k v f t s c h l O12\r\nmg mk h l\r\nme mk\r\n",
    b"ms mk 2 MX\r\nhi\r\nms mk S2\r\nhi\r\nms mk\r\nms mk 2 q\r\nhi\r\nms mk 2 c k O5 b\r\nhi\r\n"
    b"ms mk 2 c k O5\r\nhi\r\nmn\r\n",
    b"mg\r\nms\r\nmd\r\nma\r\nme\r\nmn x\r\nmz\r\nmgg x\r\nme nokey\r\n",
    b"mg x zz\r\nmg x v v\r\nmd foo x y z\r\nmg x O" + b"a" * 40 + b"\r\nmg x T\r\nmg x Tx\r\n"
    b"mg x N\r\nms x 1 F\r\nx\r\nmn\r\n",
    b"mg viv N30 v\r\nmg viv N30 v\r\nms s2 1 T60\r\nx\r\nmg s2 R90 v\r\nmg s2 R90 v\r\n",
    b"ms v1 1 I\r\nx\r\nms v1 1 T0 F5 I\r\nx\r\nmg v1 v f\r\nmd v1 I T30\r\nmg v1 v c\r\n"
    b"mg v1 v c\r\nms v1 1 C1 I\r\ny\r\nmg v1 v\r\n",
    b"ms Zm9v 2 b k c\r\nhi\r\nmg Zm9v b k v\r\nmg nokey k O124\r\nmg Zm9v b v k s\r\n"
    b"me Zm9v b\r\nmd Zm9v b k q\r\nmg Zm9v b v k\r\n",
    b"ms a 2 ME\r\nhi\r\nms a 2 ME\r\nhi\r\nms a 2 MA\r\n!!\r\nms a 2 MP\r\n<<\r\n"
    b"ms z 1 MA\r\nx\r\n"
    b"ms a 1 MR F3\r\nr\r\nms q 1 MR\r\nr\r\nmg a v f\r\nms a 1 C1\r\nx\r\nms q 1 C1\r\nx\r\n",
    b"set c 0 0 1\r\nx\r\ngets c\r\ncas c 0 0 1 $CAS+1\r\ny\r\ncas c 0 0 1 $CAS+1\r\nz\r\n"
    b"ms c 1 C$CAS+2 c\r\nw\r\nmd c C$CAS+3 q\r\nmg c v\r\n",
    b"set a 0 0 1\r\nx\r\nmg a T100 v t\r\nmg a u v\r\nma a\r\nset n 0 0 1\r\n5\r\n"
    b"ma n v MI D10\r\nma n M- D3 v c\r\nma n C1 v\r\nmd n C1\r\n",
    b"get a\x00junk\r\nset k\x01\t 0 0 1\r\nx\r\nget k\x01\t\r\n",
    b"get " + b" ".join(b"k%d" % (i % 3) for i in range(30)) + b" " + b"z" * 251 + b"\r\n",
    b"set k1 0 0 1\r\nx\r\ngets " + b" ".join(b"k%d" % (i % 3) for i in range(40)) + b"\r\n"
    b"gat 100 " + b" ".join(b"k%d" % (i % 3) for i in range(30)) + b"\r\n",
    b"set n 0 0 5\r\n1 2 3\r\nincr n 1\r\nset m 0 0 3\r\n1\x002\r\nincr m 1\r\n"
    b"set z 0 0 2\r\n-5\r\nincr z 1\r\nset y 0 0 2\r\n-0\r\nincr y 2\r\n",
    b"set s 0 0 3\r\nabc\r\nappend s 0 0 1048570\r\n" + b"x" * 1048570 + b"\r\nget s\r\n",
    b"ma cnt N0 J18446744073709551615 v\r\nma cnt v\r\nma cnt D18446744073709551616\r\n",
    b"ms k 2 F4294967296 T0\r\nhi\r\nmg k f v\r\nms k 2 F-1\r\nhi\r\nms k 2 T\r\nhi\r\n",
    b"set t1 0 2592000 1\r\nx\r\nmg t1 t\r\nset t2 0 2592001 1\r\nx\r\nget t2\r\n",
    b"lru_crawler metadump 64\r\nlru_crawler metadump foo\r\nlru_crawler metadump 1,x\r\n"
    b"lru_crawler metadump\r\nlru_crawler metadump all x\r\nlru_crawler\r\n",
    b"set x 0 0 1\r\nx\r\nbget x y\r\nbget\r\nbgets x\r\nxget x\r\n",
    b"stats cachedump 1\r\nstats cachedump 64 1\r\nstats cachedump x 1\r\nstats cachedump 1 -1\r\n"
    b"stats cachedump\r\nstats cachedump 63 0\r\n",
    b"quit\r\nget a\r\n",
]


@pytest.mark.parametrize("data", HAND_WRITTEN, ids=range(len(HAND_WRITTEN)))
def test_hand_written_sequences(memcached_port: int, hastack_cache, data: bytes) -> None:  # type: ignore[no-untyped-def]
    expected, got = both(memcached_port, hastack_cache.port, data)
    assert got == expected


KEYS = st.sampled_from([b"a", b"b", b"Zm9v", b"k" * 250, b"k" * 251, b"\x01x"])
VALUES = st.sampled_from([b"", b"0", b"10", b"18446744073709551615", b"abc", b" 12", b"x" * 40,
                          b"a\r\nb", b"\x00\xff\r", b"END\r\n"])
NUMS = st.sampled_from([b"0", b"1", b"-1", b"100", b"1000", b"4294967296", b"x", b"+3", b"noreply"])


@st.composite
def storage(draw: st.DrawFn) -> bytes:
    cmd = draw(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend", b"cas"]))
    key = draw(KEYS)
    value = draw(VALUES)
    size = len(value) + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
    parts = [cmd, key, draw(NUMS), draw(st.sampled_from([b"0", b"-1", b"1000", b"x"])),
             b"%d" % size]
    if cmd == b"cas":
        parts.append(draw(st.sampled_from([b"0", b"99999999", b"x", b"$CAS+1", b"$CAS+2",
                                           b"$CAS+3"])))
    if draw(st.booleans()):
        parts.append(b"noreply")
    return b" ".join(parts) + b"\r\n" + value + b"\r\n"


@st.composite
def simple(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["get", "gets", "delete", "incr", "decr", "touch", "gat", "misc"]))
    key = draw(KEYS)
    if kind in ("get", "gets"):
        keys = draw(st.lists(KEYS.filter(lambda k: len(k) <= 250), min_size=0, max_size=3))
        return kind.encode() + b"".join(b" " + k for k in keys) + b"\r\n"
    if kind == "delete":
        tail = draw(st.sampled_from([b"", b" 0", b" noreply", b" 0 noreply", b" 5"]))
        return b"delete " + key + tail + b"\r\n"
    if kind in ("incr", "decr"):
        delta = draw(st.sampled_from([b"1", b"0", b"5", b"18446744073709551615", b"-1", b"x"]))
        return kind.encode() + b" " + key + b" " + delta + draw(
            st.sampled_from([b"", b" noreply"])) + b"\r\n"
    if kind == "touch":
        return b"touch " + key + b" " + draw(NUMS) + b"\r\n"
    if kind == "gat":
        if len(key) > 250:
            key = b"a"
        return draw(st.sampled_from([b"gat ", b"gats "])) + draw(NUMS) + b" " + key + b"\r\n"
    return draw(st.sampled_from([b"version\r\n", b"verbosity 1\r\n", b"bogus\r\n", b"\r\n",
                                 b"mn\r\n", b"flush_all\r\n", b"stats reset\r\n"]))


META_FLAGS = st.sampled_from([b"v", b"k", b"c", b"f", b"s", b"q", b"O12", b"T100", b"T-1",
                              b"N100", b"R200", b"I", b"h", b"u", b"MA", b"ME", b"MP", b"MR",
                              b"MS", b"MD", b"MI", b"D5", b"J7", b"F9", b"C1", b"b", b"zz", b"t",
                              b"C$CAS+1", b"C$CAS+2", b"N0", b"R2000", b"l", b"P", b"L"])


@st.composite
def meta(draw: st.DrawFn) -> bytes:
    cmd = draw(st.sampled_from([b"mg", b"ms", b"md", b"ma", b"me"]))
    key = draw(KEYS)
    flags = draw(st.lists(META_FLAGS, max_size=4))
    if cmd == b"me":
        return b"me " + key + b"\r\n"
    if cmd == b"ms":
        value = draw(VALUES)
        return b" ".join([b"ms", key, b"%d" % len(value), *flags]) + b"\r\n" + value + b"\r\n"
    return b" ".join([cmd, key, *flags]) + b"\r\n"


COMMANDS = st.one_of(storage(), simple(), meta())


@settings(max_examples=300)
@given(st.lists(COMMANDS, min_size=1, max_size=12))
def test_generated_sequences(memcached_port: int, hastack_cache, cmds: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    expected, got = both(memcached_port, hastack_cache.port, b"".join(cmds))
    assert got == expected


JUNK = st.lists(
    st.sampled_from([b"get", b"set", b"mg", b"ms", b"md", b"ma", b" ", b" ", b"\r\n", b"\n",
                     b"\r", b"\x00", b"k", b"1", b"0", b"-", b"v", b"q", b"noreply", b"T",
                     b"\t", b"\xff", b"a", b"b"]),
    min_size=1, max_size=30,
)  # fmt: skip


@settings(max_examples=200)
@given(JUNK)
def test_token_junk(memcached_port: int, hastack_cache, parts: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Byte soup made of protocol fragments (tokens never reach 250 bytes: see the module
    docstring for the one case where memcached drops replies)."""
    expected, got = both(memcached_port, hastack_cache.port, b"".join(parts))
    assert got == expected
