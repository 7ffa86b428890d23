"""ServerCodec / ReplyParser: framing, memcached's numeric quirks, errors, split invariance."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack.cache import proto
from hastack.cache.proto import (
    Arith,
    Delete,
    FlushAll,
    Get,
    Line,
    Meta,
    MetaReply,
    ReplyParser,
    ServerCodec,
    Store,
    Value,
)
from hastack.errors import ProtocolError


def parse_all(data: bytes, chunks: list[int] | None = None) -> list[object]:
    """Every event or error (as ('error', reply, fatal)) from ``data`` fed in pieces."""
    codec = ServerCodec()
    out: list[object] = []
    pieces = [data] if chunks is None else _split(data, chunks)
    for piece in pieces:
        codec.receive_data(piece)
        while True:
            try:
                ev = codec.next_event()
            except ProtocolError as err:
                out.append(("error", err.reply, err.fatal))
                if err.fatal:
                    return out
                continue
            if ev is None:
                break
            out.append(_describe(ev))
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def _describe(ev: object) -> object:
    slots = []
    for cls in type(ev).__mro__:
        slots.extend(getattr(cls, "__slots__", ()))
    return (type(ev).__name__, tuple((s, repr(getattr(ev, s))) for s in sorted(slots)))


def one(data: bytes) -> object:
    codec = ServerCodec()
    codec.receive_data(data)
    return codec.next_event()


def error_of(data: bytes) -> bytes:
    codec = ServerCodec()
    codec.receive_data(data)
    with pytest.raises(ProtocolError) as info:
        while codec.next_event() is not None:
            pass
    return info.value.reply


def test_long_key_in_get_keeps_the_keys_before_it() -> None:
    ev = one(b"get a b " + b"k" * 251 + b" c\r\n")
    assert isinstance(ev, Get) and ev.keys == [b"a", b"b"] and ev.error == proto.BAD_FORMAT


def test_get_and_lf_only_lines() -> None:
    ev = one(b"get a b\n")
    assert isinstance(ev, Get) and ev.keys == [b"a", b"b"] and not ev.with_cas
    ev = one(b"gets  a   b\r\n")
    assert isinstance(ev, Get) and ev.keys == [b"a", b"b"] and ev.with_cas


def test_store_reads_data_block() -> None:
    ev = one(b"set k 5 0 3 noreply\r\nabc\r\n")
    assert isinstance(ev, Store)
    assert (ev.key, ev.flags, ev.data, ev.noreply) == (b"k", 5, b"abc", True)


def test_numbers_follow_c_strtol() -> None:
    ev = one(b"set k +5 4294967297 +1\r\nx\r\n")
    assert isinstance(ev, Store) and ev.flags == 5 and ev.exptime == 1
    ev = one(b"set k 4294967296 2147483648 1\r\nx\r\n")
    assert isinstance(ev, Store) and ev.flags == 0 and ev.exptime == -(2**31)
    assert proto.strtoull(b"-1") is None
    assert proto.strtoull(b"-0") == 0
    assert proto.strtoull(b"18446744073709551616") is None
    assert proto.strtoull(b" 12\r\n") == 12
    assert proto.strtoull(b"12abc") is None


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"GET foo\r\n", proto.ERROR),
        (b"\r\n", proto.ERROR),
        (b"set foo 0 0\r\n", proto.ERROR),
        (b"set k 0 0 -1\r\n", proto.BAD_FORMAT),
        (b"delete foo 5\r\n", proto.DELETE_USAGE),
        (b"incr k x\r\n", proto.BAD_DELTA),
        (b"touch k x\r\n", proto.BAD_EXPTIME),
        (b"mg x zz\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg x v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"md foo x y z\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"md x O" + b"a" * 40 + b"\r\n", b"CLIENT_ERROR opaque token too long\r\n"),
        (b"ms foo 2 MX\r\nhi\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n"),
        (b"shutdown\r\n", proto.SHUTDOWN_DISABLED),
    ],
)
def test_error_replies(data: bytes, reply: bytes) -> None:
    assert error_of(data) == reply


def test_bad_chunk_is_an_event_then_the_rest_is_parsed() -> None:
    codec = ServerCodec()
    codec.receive_data(b"set k 0 0 1 noreply\r\nxx\r\nms k 1\r\nxyz\r\n")
    ev = codec.next_event()
    assert isinstance(ev, proto.BadChunk) and ev.noreply and not ev.meta
    with pytest.raises(ProtocolError) as info:
        codec.next_event()  # the "\n" left over is an empty command line
    assert info.value.reply == proto.ERROR
    ev = codec.next_event()
    assert isinstance(ev, proto.BadChunk) and not ev.noreply and ev.meta


def test_bad_storage_line_does_not_swallow_data() -> None:
    events = parse_all(b"cas foo 0 0 1\r\nx\r\n")
    assert events == [("error", proto.ERROR, False), ("error", proto.ERROR, False)]


def test_meta_set_error_swallows_data() -> None:
    events = parse_all(b"ms foo 2 MX\r\nhi\r\nmn\r\n")
    assert events[0] == ("error", b"CLIENT_ERROR invalid mode for ms M token\r\n", False)
    assert events[1][0] == "Meta"
    assert len(events) == 2


def test_too_large_value_is_swallowed_without_buffering() -> None:
    codec = ServerCodec(max_value_bytes=10)
    codec.receive_data(b"set k 0 0 100\r\n" + b"x" * 50)
    ev = codec.next_event()
    assert isinstance(ev, Store) and ev.data is None and ev.size == 100
    assert codec.next_event() is None
    codec.receive_data(b"x" * 50 + b"\r\nget k\r\n")
    assert isinstance(codec.next_event(), Get)
    assert codec.buffered == 0


def test_long_line_without_newline_closes() -> None:
    codec = ServerCodec()
    codec.receive_data(b"x" * 3000)
    with pytest.raises(ProtocolError) as info:
        codec.next_event()
    assert info.value.fatal and info.value.reply == b""
    codec = ServerCodec()
    codec.receive_data(b"get " + b"k " * 1500)  # a long multiget keeps reading
    assert codec.next_event() is None


def test_http_request_closes() -> None:
    assert parse_all(b"GET / HTTP/1.1\r\n") == [("error", b"", True)]


def test_meta_flags() -> None:
    ev = one(b"mg Zm9v b v k O123 T30 N5\r\n")
    assert isinstance(ev, Meta) and ev.key == b"foo"
    assert ev.flags.value and ev.flags.base64 and ev.flags.ttl == 30 and ev.flags.vivify_ttl == 5
    ev = one(b"ms k 3 T-1 F7 C9 I MA q\r\nabc\r\n")
    assert isinstance(ev, Meta) and ev.data == b"abc"
    f = ev.flags
    got = (f.ttl, f.client_flags, f.cas, f.invalidate, f.mode, f.quiet)
    assert got == (-1, 7, 9, True, 65, True)


def test_other_commands() -> None:
    assert isinstance(one(b"delete k 0 noreply\r\n"), Delete)
    ev = one(b"incr k 18446744073709551615\r\n")
    assert isinstance(ev, Arith) and ev.delta == 2**64 - 1
    ev = one(b"flush_all 10 noreply\r\n")
    assert isinstance(ev, FlushAll) and ev.delay == 10 and ev.noreply


REQUESTS = st.sampled_from(
    [
        b"get a b c\r\n",
        b"gets a\n",
        b"set a 1 0 3\r\nabc\r\n",
        b"set a 1 0 3\r\nabcd\r\n",
        b"cas a 0 0 1 5\r\nx\r\n",
        b"append a 0 0 0 noreply\r\n\r\n",
        b"incr a 5\r\n",
        b"delete a 0\r\n",
        b"mg a v c k O1\r\n",
        b"ms a 2 T5\r\nhi\r\n",
        b"ms a 2 MX\r\nhi\r\n",
        b"mn\r\n",
        b"bogus\r\n",
        b"\r\n",
        b"set b 0 0 2000000\r\n" + b"z" * 2000002,
        b"stats\r\n",
    ]
)


@given(st.lists(REQUESTS, max_size=12), st.lists(st.integers(0, 10**7), max_size=8))
def test_any_split_parses_the_same(reqs: list[bytes], cuts: list[int]) -> None:
    data = b"".join(reqs)
    assert parse_all(data, cuts) == parse_all(data)


@given(st.binary(max_size=600), st.lists(st.integers(0, 700), max_size=5))
def test_garbage_raises_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    parse_all(data, cuts)  # anything but ProtocolError propagates and fails the test


@given(st.lists(st.sampled_from([b"get", b"set", b"mg", b"ms", b"x", b"0", b"1", b"-1", b"k",
                                 b"noreply", b"\r", b"T", b"v", b"b", b"\x00", b"99999999999"]),
                max_size=10))
def test_token_soup_raises_only_protocol_error(tokens: list[bytes]) -> None:
    parse_all(b" ".join(tokens) + b"\r\nab\r\n")


@given(
    st.binary(min_size=1, max_size=40).filter(lambda k: b" " not in k and b"\n" not in k
                                              and b"\r" not in k and b"\x00" not in k),
    st.binary(max_size=200),
    st.integers(0, 2**32 - 1),
    st.integers(0, 10**6),
)
def test_store_encode_decode_round_trip(key: bytes, value: bytes, flags: int, exptime: int) -> None:
    ev = one(proto.encode_store(b"set", key, value, flags, exptime))
    assert isinstance(ev, Store)
    assert (ev.key, ev.data, ev.flags, ev.exptime) == (key, value, flags, exptime)


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=10).map(lambda b: b.hex().encode()),
                          st.binary(max_size=50), st.integers(0, 2**32 - 1)), max_size=5),
       st.lists(st.integers(0, 2000), max_size=6))
def test_reply_parser_round_trip(values: list[tuple[bytes, bytes, int]], cuts: list[int]) -> None:
    wire = b"".join(b"VALUE %s %d %d\r\n%s\r\n" % (k, f, len(v), v) for k, v, f in values)
    wire += b"END\r\nVA 2 c5\r\nhi\r\nHD O1\r\nSTORED\r\n"
    parser = ReplyParser()
    events: list[object] = []
    for piece in _split(wire, cuts):
        parser.receive_data(piece)
        while (ev := parser.next_event()) is not None:
            events.append(ev)
    got = [(e.key, e.data, e.flags) for e in events if isinstance(e, Value)]
    assert got == [(k, v, f) for k, v, f in values]
    tail = events[len(values):]
    assert isinstance(tail[0], Line) and tail[0].line == b"END"
    assert isinstance(tail[1], MetaReply) and tail[1].data == b"hi" and tail[1].flags == [b"c5"]
    assert isinstance(tail[2], MetaReply) and tail[2].code == b"HD"
    assert isinstance(tail[3], Line) and tail[3].line == b"STORED"


def test_trickled_value_is_joined_once() -> None:
    """A 100 kB value sent 10 bytes at a time is collected, not re-copied per piece."""
    codec = ServerCodec()
    value = bytes(range(256)) * 400
    codec.receive_data(b"set k 0 0 %d\r\n" % len(value))
    assert codec.next_event() is None
    held = codec._buf
    wire = value + b"\r\n"
    for i in range(0, len(wire) - 10, 10):
        codec.receive_data(wire[i : i + 10])
        assert codec._buf is held  # pieces are only collected while the block is incomplete
    codec.receive_data(wire[len(wire) - (len(wire) - 1) % 10 - 1 :])
    ev = codec.next_event()
    assert isinstance(ev, Store) and ev.data == value


def test_trickled_line_waits_for_newline() -> None:
    codec = ServerCodec()
    line = b"get " + b" ".join(b"key%d" % i for i in range(600)) + b"\r\n"
    for i in range(0, len(line), 7):
        codec.receive_data(line[i : i + 7])
        ev = codec.next_event()
    assert isinstance(ev, Get) and len(ev.keys) == 600
