"""Unit and property tests for the sans-I/O HTTP/1.1 codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.errors import ProtocolError
from hastack.proxy.proto import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    EndOfMessage,
    HTTPConnection,
    Request,
    Response,
)


def events_of(conn: HTTPConnection, chunks: list[bytes], eof: bool = True) -> list[object]:
    out: list[object] = []
    for c in chunks:
        if not c:
            continue  # b"" means EOF in this API
        conn.receive_data(c)
        out.extend(drain(conn))
    if eof:
        conn.receive_data(b"")
        out.extend(drain(conn))
    return out


def drain(conn: HTTPConnection) -> list[object]:
    out: list[object] = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            return out


def merge_data(events: list[object]) -> list[object]:
    """Coalesce adjacent Data events: how bytes are split into Data is not part of the contract."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def parse(data: bytes, role: str = "server", **kw: int) -> list[object]:
    return merge_data(events_of(HTTPConnection(role, **kw), [data]))  # type: ignore[arg-type]


PIPELINE = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    b"GET /d HTTP/1.0\r\n\r\n"
)


def test_pipeline_events() -> None:
    evs = parse(PIPELINE)
    assert [type(e).__name__ for e in evs] == [
        "Request", "EndOfMessage",
        "Request", "Data", "EndOfMessage",
        "Request", "Data", "EndOfMessage",
        "Request", "EndOfMessage", "ConnectionClosed",
    ]  # fmt: skip
    r0 = evs[0]
    assert isinstance(r0, Request)
    assert r0.method == b"GET" and r0.target == b"/a" and r0.keep_alive
    assert r0.header(b"host") == b"x"
    assert evs[3] == Data(b"hello")
    assert evs[6] == Data(b"abcde")
    assert evs[7] == EndOfMessage([(b"X-T", b"1")])
    r3 = evs[8]
    assert isinstance(r3, Request) and r3.version == b"1.0" and not r3.keep_alive


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_any_split_parses_the_same(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [PIPELINE[a:b] for a, b in zip([0, *points], [*points, len(PIPELINE)], strict=True)]
    got = merge_data(events_of(HTTPConnection("server"), chunks))
    assert got == parse(PIPELINE)


RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"  # HEAD: no body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.0 200 OK\r\n\r\nuntil close"
)


def client_events(chunks: list[bytes]) -> list[object]:
    c = HTTPConnection("client")
    for m in (b"GET", b"HEAD", b"GET", b"GET", b"GET"):
        c.expect_response(m)
    return merge_data(events_of(c, chunks))


def test_responses() -> None:
    evs = client_events([RESPONSES])
    assert isinstance(evs[0], Response) and evs[0].status == 100
    assert evs[2] == Data(b"abc")
    assert isinstance(evs[4], Response) and isinstance(evs[5], EndOfMessage)
    assert evs[7] == Data(b"wxyz")
    assert evs[-3] == Data(b"until close")
    assert isinstance(evs[-2], EndOfMessage) and isinstance(evs[-1], ConnectionClosed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES)), max_size=12))
def test_any_split_responses(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [RESPONSES[a:b] for a, b in zip([0, *points], [*points, len(RESPONSES)], strict=True)]
    assert client_events(chunks) == client_events([RESPONSES])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["server", "client"]))
def test_garbage_raises_only_protocol_error(data: bytes, role: str) -> None:
    c = HTTPConnection(role, max_request_line_bytes=64, max_header_bytes=128)  # type: ignore[arg-type]
    try:
        for ev in events_of(c, [data]):
            if isinstance(ev, Response):
                assert isinstance(ev.headers, list)  # parsed lazily: must not raise either
    except ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_lazy_response_headers_match_strict_parse(block: bytes) -> None:
    """Well-formed header blocks give the same fields whether parsed eagerly or lazily."""
    wire = b"HTTP/1.1 204 No Content\r\n" + block + b"\r\n"
    c = HTTPConnection("client")
    c.expect_response(b"GET")
    try:
        evs = events_of(c, [wire])
    except ProtocolError:
        return
    s = HTTPConnection("server")
    try:
        req = events_of(s, [b"GET / HTTP/1.1\r\n" + block + b"\r\n"])[0]
    except ProtocolError:
        return  # strictly invalid: the lenient response parse may drop lines
    if isinstance(req, Request) and isinstance(evs[0], Response):
        assert evs[0].headers == req.headers


HEADER_LINE = st.tuples(
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode),
    st.text("abc xyz0123/;=", max_size=20).map(lambda s: s.strip().encode()),
).filter(lambda kv: kv[0].lower() not in (b"content-length", b"transfer-encoding"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(HEADER_LINE, max_size=8),
    st.lists(st.binary(min_size=1, max_size=50), max_size=6),
    st.lists(st.integers(min_value=1, max_value=40), max_size=6),
)
def test_chunked_round_trip(
    headers: list[tuple[bytes, bytes]], body: list[bytes], cuts: list[int]
) -> None:
    sender = HTTPConnection("client")
    req = Request(b"POST", b"/up", [*headers, (b"Transfer-Encoding", b"chunked")])
    wire = sender.send(req) + b"".join(sender.send(Data(b)) for b in body)
    wire += sender.send(EndOfMessage())
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(wire[pos : pos + n])
        pos += n
    chunks.append(wire[pos:])
    evs = merge_data(events_of(HTTPConnection("server"), chunks))
    assert evs[0] == req
    rest = evs[1:]
    if body:
        assert rest[0] == Data(b"".join(body))
        rest = rest[1:]
    assert rest == [EndOfMessage(), ConnectionClosed()]


def test_response_round_trip() -> None:
    s = HTTPConnection("server")
    wire = s.send(Response(200, [(b"Content-Length", b"5")])) + s.send(Data(b"hello"))
    wire += s.send(EndOfMessage())
    c = HTTPConnection("client")
    c.expect_response(b"GET")
    evs = merge_data(events_of(c, [wire]))
    assert evs[1:] == [Data(b"hello"), EndOfMessage(), ConnectionClosed()]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / FOO\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"y" * 300 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7d1\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 400),  # EOF mid-body
    ],
)
def test_rejections(raw: bytes, status: int) -> None:
    c = HTTPConnection(
        "server",
        max_request_line_bytes=64,
        max_header_bytes=256,
        max_headers=10,
        max_body_bytes=1000,
    )
    with pytest.raises(ProtocolError) as ei:
        events_of(c, [raw])
    assert ei.value.reply.startswith(b"HTTP/1.1 %d " % status)
    assert ei.value.fatal


def test_slowloris_head_bounded() -> None:
    c = HTTPConnection("server", max_request_line_bytes=64, max_header_bytes=256)
    c.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError) as ei:
        for _ in range(1000):
            c.receive_data(b"X-a: b\r\n")
            assert c.next_event() is NEED_DATA
    assert b" 431 " in ei.value.reply


def test_keep_alive_rules() -> None:
    def ka(raw: bytes) -> bool:
        ev = parse(raw)[0]
        assert isinstance(ev, Request)
        return ev.keep_alive

    assert ka(b"GET / HTTP/1.1\r\n\r\n")
    assert not ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert not ka(b"GET / HTTP/1.0\r\n\r\n")
    assert ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")


def test_expect_continue_flag() -> None:
    ev = parse(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")[0]
    assert isinstance(ev, Request) and ev.expect_continue


def test_bare_lf_and_leading_blank_lines() -> None:
    evs = parse(b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n")
    assert isinstance(evs[0], Request) and evs[0].header(b"host") == b"a"


def test_truncated_response_body_is_error() -> None:
    c = HTTPConnection("client")
    c.expect_response(b"GET")
    with pytest.raises(ProtocolError) as ei:
        events_of(c, [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"])
    assert ei.value.reply == b""


@settings(max_examples=60, deadline=None)
@given(st.lists(HEADER_LINE, max_size=8), st.binary(max_size=100))
def test_response_round_trip_with_headers(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    s = HTTPConnection("server")
    resp = Response(200, [*headers, (b"Content-Length", b"%d" % len(body))], b"OK")
    wire = s.send(resp) + s.send(Data(body)) + s.send(EndOfMessage())
    c = HTTPConnection("client")
    c.expect_response(b"GET")
    evs = merge_data(events_of(c, [wire]))
    assert evs[0] == resp
    assert evs[-2:] == [EndOfMessage(), ConnectionClosed()]


MIXED = (
    b"GET /lf HTTP/1.1\nHost: a\nX-A:  padded  \n\n"  # bare LF head, trailing blanks
    b"GET /crlf HTTP/1.1\r\nHost: b\r\n\r\n"
    b"POST /p HTTP/1.1\nHost: c\nContent-Length: 2\n\nok"
    b"GET /last HTTP/1.0\r\nX-B: 1\r\n\r\n"
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(MIXED)), max_size=10))
def test_any_split_of_mixed_line_endings(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [MIXED[a:b] for a, b in zip([0, *points], [*points, len(MIXED)], strict=True)]
    got = merge_data(events_of(HTTPConnection("server"), chunks))
    assert got == parse(MIXED)
    reqs = [e for e in got if isinstance(e, Request)]
    assert [r.target for r in reqs] == [b"/lf", b"/crlf", b"/p", b"/last"]
    assert reqs[0].headers == [(b"Host", b"a"), (b"X-A", b"padded")]
    assert Data(b"ok") in got
