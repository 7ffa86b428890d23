"""Engine + CacheState: memcached semantics with time passed in, LRU against a model."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given
from hypothesis import strategies as st

from hastack.cache.engine import Engine, Quit, StreamReply
from hastack.cache.proto import ServerCodec
from hastack.cache.state import CacheState, item_cost, make_data
from hastack.errors import ProtocolError

T0 = 1_700_000_000


def make(max_memory_bytes: int = 64 << 20, max_item_bytes: int = 1 << 20) -> Engine:
    return Engine(CacheState(max_memory_bytes=max_memory_bytes, max_item_bytes=max_item_bytes,
                             started=T0 - 100, evict_slack_bytes=0))


def run(engine: Engine, data: bytes, now: int = T0) -> bytes:
    codec = ServerCodec(max_value_bytes=engine.state.max_item_bytes)
    codec.receive_data(data)
    out = b""
    while True:
        try:
            ev = codec.next_event()
            if ev is None:
                return out
            reply = engine.execute(ev, now)
            out += b"".join(reply.chunks) if isinstance(reply, StreamReply) else reply
        except ProtocolError as err:
            out += err.reply
        except Quit:
            return out + b"<quit>"


def test_set_get_gets_and_cas() -> None:
    e = make()
    assert run(e, b"set a 5 0 2\r\nhi\r\nget a\r\n") == b"STORED\r\nVALUE a 5 2\r\nhi\r\nEND\r\n"
    assert run(e, b"gets a\r\n") == b"VALUE a 5 2 1\r\nhi\r\nEND\r\n"
    assert run(e, b"cas a 0 0 1 2\r\nx\r\n") == b"EXISTS\r\n"
    assert run(e, b"cas a 0 0 1 1\r\nx\r\n") == b"STORED\r\n"
    assert run(e, b"cas zz 0 0 1 1\r\nx\r\n") == b"NOT_FOUND\r\n"
    assert e.state.cas_badval == 1 and e.state.cas_hits == 1 and e.state.cas_misses == 1


def test_incr_wraps_and_decr_clamps_and_pads() -> None:
    e = make()
    run(e, b"set n 0 0 20\r\n18446744073709551615\r\n")
    assert run(e, b"incr n 1\r\n") == b"0\r\n"
    assert run(e, b"get n\r\n") == b"VALUE n 0 20\r\n0" + b" " * 19 + b"\r\nEND\r\n"
    run(e, b"set m 0 0 2\r\n10\r\n")
    reply = run(e, b"decr m 3\r\nget m\r\nincr m 5\r\n")
    assert reply == b"7\r\nVALUE m 0 2\r\n7 \r\nEND\r\n12\r\n"
    assert run(e, b"decr m 100\r\n") == b"0\r\n"
    assert run(e, b"incr nope 1\r\n") == b"NOT_FOUND\r\n"
    run(e, b"set s 0 0 3\r\nabc\r\n")
    assert run(e, b"incr s 1\r\n").startswith(b"CLIENT_ERROR cannot increment")


def test_expiry_rules_with_time_passed_in() -> None:
    e = make()
    run(e, b"set rel 0 10 1\r\nx\r\nset neg 0 -1 1\r\nx\r\n", T0)
    run(e, b"set abs 0 %d 1\r\nx\r\n" % (T0 + 20), T0)
    assert run(e, b"get neg\r\n", T0) == b"END\r\n"
    assert run(e, b"get rel abs\r\n", T0 + 9).count(b"VALUE") == 2
    assert run(e, b"get rel abs\r\n", T0 + 10) == b"VALUE abs 0 1\r\nx\r\nEND\r\n"
    assert run(e, b"get abs\r\n", T0 + 20) == b"END\r\n"
    assert e.state.get_expired == 3


def test_touch_and_gat() -> None:
    e = make()
    run(e, b"set k 0 5 1\r\nx\r\n", T0)
    assert run(e, b"touch k 100\r\n", T0) == b"TOUCHED\r\n"
    assert run(e, b"gat 0 k\r\n", T0 + 50) == b"VALUE k 0 1\r\nx\r\nEND\r\n"
    assert run(e, b"get k\r\n", T0 + 10**6) == b"VALUE k 0 1\r\nx\r\nEND\r\n"


def test_flush_all_now_and_delayed() -> None:
    e = make()
    run(e, b"set a 0 0 1\r\nx\r\n", T0)
    assert run(e, b"flush_all\r\nget a\r\n", T0) == b"OK\r\nEND\r\n"
    run(e, b"set b 0 0 1\r\nx\r\n", T0)
    assert run(e, b"flush_all 10\r\n", T0) == b"OK\r\n"
    assert run(e, b"get b\r\n", T0 + 5) == b"VALUE b 0 1\r\nx\r\nEND\r\n"
    assert run(e, b"get b\r\n", T0 + 10) == b"END\r\n"
    run(e, b"set c 0 0 1\r\nx\r\n", T0 + 11)
    assert run(e, b"get c\r\n", T0 + 12) == b"VALUE c 0 1\r\nx\r\nEND\r\n"


def test_too_large_is_rejected_swallowed_and_unlinks_old_value() -> None:
    e = make(max_item_bytes=1024)
    run(e, b"set k 0 0 1\r\nx\r\n")
    big = b"y" * 1000
    reply = run(e, b"set k 0 0 1000\r\n" + big + b"\r\nget k\r\n")
    assert reply == b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    # memcached's item size formula: 48 + 8 + key + 1 + value + 2 <= -I
    assert run(e, b"set k 0 0 964\r\n" + b"z" * 964 + b"\r\n") == b"STORED\r\n"
    assert run(e, b"set k 0 0 965\r\n" + b"z" * 965 + b"\r\n").startswith(b"SERVER_ERROR")
    assert e.state.store_too_large == 2


def test_memory_limit_evicts_in_lru_order_and_is_honest() -> None:
    per_item = item_cost(b"k000", make_data(0, b"v" * 100))
    e = make(max_memory_bytes=per_item * 10)
    for i in range(10):
        run(e, b"set k%03d 0 0 100\r\n%s\r\n" % (i, b"v" * 100))
    run(e, b"get k000\r\n")  # k000 becomes most recent
    run(e, b"set k010 0 0 100\r\n%s\r\n" % (b"v" * 100))
    assert run(e, b"get k001\r\n") == b"END\r\n"
    assert run(e, b"get k000\r\n").startswith(b"VALUE")
    assert e.state.bytes <= e.state.max_memory_bytes
    assert e.state.evictions == 1 and e.state.evicted_unfetched == 1


def test_meta_stale_while_revalidate() -> None:
    e = make()
    run(e, b"set s1 0 0 1\r\nx\r\n")
    assert run(e, b"md s1 I T30\r\n") == b"HD\r\n"
    first = run(e, b"mg s1 v c\r\n")
    second = run(e, b"mg s1 v c\r\n")
    assert first.split(b"\r\n")[0].endswith(b" X W")
    assert second.split(b"\r\n")[0].endswith(b" Z X")
    assert run(e, b"mg viv N30 v\r\nmg viv N30 v\r\n") == b"VA 0 W\r\n\r\nVA 0 Z\r\n\r\n"


def test_meta_misses_echo_opaque_and_key() -> None:
    e = make()
    assert run(e, b"mg nokey k O124\r\n") == b"EN knokey O124\r\n"
    assert run(e, b"md nokey O9 k\r\n") == b"NF O9 knokey\r\n"
    assert run(e, b"mg Zm9v b v k\r\n") == b"EN kZm9v b\r\n"
    assert run(e, b"ma cnt N0 J10 v\r\nma cnt MD D20 v\r\n") == b"VA 2\r\n10\r\nVA 1\r\n0\r\n"


def test_stats_counts_per_key() -> None:
    e = make()
    run(e, b"set a 0 0 1\r\nx\r\nget a b\r\ngat 100 a b\r\n")
    s = e.state
    assert (s.cmd_get, s.get_hits, s.get_misses) == (2, 1, 1)
    assert (s.cmd_touch, s.touch_hits, s.touch_misses) == (2, 1, 1)
    stats = run(e, b"stats\r\n")
    assert b"STAT curr_items 1\r\n" in stats and stats.endswith(b"END\r\n")
    assert run(e, b"stats reset\r\n") == b"RESET\r\n" and s.cmd_get == 0


def test_quit() -> None:
    assert run(make(), b"quit\r\nget a\r\n") == b"<quit>"


OPS = st.lists(
    st.tuples(st.sampled_from(["set", "get", "delete", "add"]), st.integers(0, 15)),
    max_size=120,
)


@given(OPS, st.integers(3, 12))
def test_lru_matches_a_model(ops: list[tuple[str, int]], capacity: int) -> None:
    """Equal-sized items: the cache holds exactly what an LRU of `capacity` items holds."""
    cost = item_cost(b"k00", make_data(0, b"vv"))
    e = make(max_memory_bytes=cost * capacity)
    model: OrderedDict[bytes, bytes] = OrderedDict()
    for op, i in ops:
        key = b"k%02d" % i
        if op == "set" or (op == "add" and key not in model):
            run(e, b"%s %s 0 0 2\r\nvv\r\n" % (op.encode(), key))
            model[key] = b"vv"
            model.move_to_end(key)
            while len(model) > capacity:
                model.popitem(last=False)
        elif op == "add":
            assert run(e, b"add %s 0 0 2\r\nvv\r\n" % key) == b"NOT_STORED\r\n"
            model.move_to_end(key)
        elif op == "get":
            hit = run(e, b"get %s\r\n" % key) != b"END\r\n"
            assert hit == (key in model)
            if hit:
                model.move_to_end(key)
        else:
            assert (run(e, b"delete %s\r\n" % key) == b"DELETED\r\n") == (key in model)
            model.pop(key, None)
        assert list(e.state.items) == list(model)
        assert e.state.bytes == cost * len(model)


def test_batched_eviction_keeps_the_most_recent_keys() -> None:
    """Write-only load past the limit (default slack): survivors are exactly the newest keys,
    like memcached's pure LRU order for such a load, and memory never exceeds the limit."""
    per_item = item_cost(b"k00000", make_data(0, b"v" * 100))
    state = CacheState(max_memory_bytes=per_item * 1000, started=T0)
    e = Engine(state)
    for i in range(5000):
        run(e, b"set k%05d 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100))
        assert state.bytes <= state.max_memory_bytes
    survivors = sorted(state.items)
    assert survivors == [b"k%05d" % i for i in range(5000 - len(survivors), 5000)]
    assert 990 <= len(survivors) <= 1000
    assert state.evictions == 5000 - len(survivors)


def test_metadump_lists_live_items_oldest_first() -> None:
    e = make()
    run(e, b"set a 0 0 1\r\nx\r\nset b%20c 5 100 2\r\nxy\r\nset \x01k 0 0 1\r\nz\r\n", T0)
    run(e, b"set gone 0 -1 1\r\nx\r\nget a\r\n", T0)
    dump = run(e, b"lru_crawler metadump all\r\n", T0)
    lines = dump.split(b"\n")
    assert lines[0].startswith(b"key=b%%2520c exp=%d la=%d cas=2 fetch=no cls=1 size=70" % (
        T0 + 100, T0))
    assert lines[1].startswith(b"key=%01k exp=-1 ")
    assert lines[2].startswith(b"key=a exp=-1 ") and b"fetch=yes" in lines[2]
    assert dump.endswith(b"END\r\n") and b"gone" not in dump
    assert run(e, b"lru_crawler metadump 5\r\n") == b"END\r\n"
    assert run(e, b"lru_crawler metadump 64\r\n") == b"BADCLASS invalid class id\r\n"
    assert run(e, b"lru_crawler crawl all\r\n") == b"ERROR\r\n"


def test_stats_cachedump() -> None:
    e = make()
    run(e, b"set a 0 0 1\r\nx\r\nset b 0 100 2\r\nxy\r\nset big 0 0 600\r\n%s\r\n" % (b"y" * 600),
        T0)  # fmt: skip
    assert run(e, b"stats cachedump 1 0\r\n", T0) == (
        b"ITEM b [2 b; %d s]\r\nITEM a [1 b; 0 s]\r\nEND\r\n" % (T0 + 100)
    )
    assert run(e, b"stats cachedump 1 1\r\n", T0).count(b"ITEM") == 1
    assert run(e, b"stats cachedump 10 0\r\n", T0) == b"ITEM big [600 b; 0 s]\r\nEND\r\n"
    assert run(e, b"stats cachedump 1\r\n") == b"CLIENT_ERROR bad command line\r\n"
    assert run(e, b"stats cachedump 64 1\r\n") == b"CLIENT_ERROR Illegal slab id\r\n"
    assert run(e, b"stats cachedump x 1\r\n") == b"CLIENT_ERROR bad command line format\r\n"
