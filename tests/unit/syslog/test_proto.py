"""Unit tests of the sans-I/O syslog codec (no sockets)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.syslog.proto import (
    TcpFramer,
    bsd_timestamp,
    encode_rfc5424,
    fast_line,
    format_line,
    format_ts,
    frame_octet_counted,
    parse_line,
    parse_message,
    parse_rfc3339,
    parse_structured_data,
)

NOW = dt.datetime(2026, 11, 28, 8, 0, 0, tzinfo=dt.UTC).timestamp()


def parse(data: bytes):  # type: ignore[no-untyped-def]
    return parse_message(data, received=NOW, source="127.0.0.1")


# ---- RFC examples and real emitters -----------------------------------------------------------


def test_rfc3164_example() -> None:
    r = parse(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert (r.facility, r.severity, r.fmt) == (4, 2, "3164")
    assert (r.hostname, r.app_name, r.procid) == ("mymachine", "su", None)
    assert r.msg == "'su root' failed for lonvick on /dev/pts/8"
    assert format_ts(r.ts) == "2026-10-11T22:14:15.000000Z"
    assert r.note is None


def test_rfc3164_year_rolls_back_for_future_dates() -> None:
    r = parse(b"<13>Dec 31 23:59:59 h t: x")
    assert format_ts(r.ts).startswith("2025-12-31")


def test_rfc5424_examples_with_bom_and_sd() -> None:
    r = parse(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"\xef\xbb\xbfAn application event log entry..."
    )
    assert (r.facility, r.severity, r.fmt) == (20, 5, "5424")
    assert (r.hostname, r.app_name, r.procid, r.msgid) == (
        "mymachine.example.com", "evntslog", None, "ID47",
    )  # fmt: skip
    assert r.msg == "An application event log entry..."
    assert r.sd_elements() == [
        ("exampleSDID@32473", [("iut", "3"), ("eventSource", "Application"), ("eventID", "1011")])
    ]
    assert format_ts(r.ts) == "2003-10-11T22:14:15.003000Z"
    r = parse(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time")
    assert format_ts(r.ts) == "2003-08-24T12:14:15.000003Z"
    assert (r.procid, r.structured_data, r.msg) == ("8710", None, "%% It's time")


def test_sd_escapes_and_multiple_elements() -> None:
    r = parse(b'<13>1 - h a - - [timeQuality tzKnown="1"][x@1 a="q\\"b\\]c\\\\d"] text')
    assert r.sd_elements() == [("timeQuality", [("tzKnown", "1")]), ("x@1", [("a", 'q"b]c\\d')])]
    assert r.msg == "text"
    assert parse_structured_data("") == []


def test_logger_notq_and_rsyslog_protocol23() -> None:
    r = parse(b"<13>1 - - tag - - - text")
    assert (r.hostname, r.app_name, r.msg, r.ts) == (None, "tag", "text", NOW)
    r = parse(b"<13>1 2026-11-28T08:00:00Z host app - - -  two spaces\n")
    assert (r.hostname, r.app_name, r.msg) == ("host", "app", "two spaces")


def test_python_sysloghandler_forms() -> None:
    r = parse(b"<14>hello world\x00")
    assert (r.hostname, r.app_name, r.msg, r.fmt) == (None, None, "hello world", "3164")
    r = parse(b"<14>myident[123]: hi\x00")
    assert (r.app_name, r.procid, r.msg) == ("myident", "123", "hi")
    # what hastack's own services send (hastack.core.logs)
    r = parse(b"<30>Nov 28 07:59:00 web1 hastack-cache[42]: started\x00")
    assert (r.hostname, r.app_name, r.procid, r.msg) == ("web1", "hastack-cache", "42", "started")


def test_local_socket_form_has_no_hostname() -> None:
    r = parse(b"<13>Nov 28 07:59:00 sshd[123]: accepted")
    assert (r.hostname, r.app_name, r.procid, r.msg) == (None, "sshd", "123", "accepted")


def test_rsyslog_forward_formats() -> None:
    r = parse(b"<13>2026-11-28T08:00:00.5+01:00 host app text without colon")
    assert (r.hostname, r.app_name, r.msg) == ("host", "app", "text without colon")
    assert format_ts(r.ts) == "2026-11-28T07:00:00.500000Z"


def test_cisco_style() -> None:
    r = parse(b"<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured")
    assert (r.hostname, r.fmt) == (None, "3164")
    assert r.msg == "%SYS-5-CONFIG_I: Configured"


@pytest.mark.parametrize(
    ("data", "fmt", "note"),
    [
        (b"no pri at all", "raw", "no-pri"),
        (b"<192>too big", "raw", "bad-pri"),
        (b"<013>leading zero", "3164", "pri-leading-zero"),
        (b"<13>2 2026-01-01T00:00:00Z h a - - - x", "raw", "unsupported-version"),
        (b"<13>1 2026-01-01T00:00:00 h a - - - x", "5424", "bad-timestamp"),
        (b'<13>1 - h a - - [open x="y" msg', "5424", "bad-sd"),
        (b"<13>", "3164", None),
        (b"", "raw", "empty"),
    ],
)
def test_malformed_become_records(data: bytes, fmt: str, note: str | None) -> None:
    r = parse(data)
    assert (r.fmt, r.note) == (fmt, note)
    line = format_line(r)
    assert line.endswith("\n") and line.count("\n") == 1
    if fmt == "raw" and data:
        assert data.decode() in line  # the original text is kept


def test_control_chars_and_latin1_escaped() -> None:
    r = parse(b"<13>caf\xe9 \x07bell\nsecond")
    line = format_line(r)
    assert "#007bell#012second" in line and "caf\\xe9" in line


def test_line_round_trip() -> None:
    r = parse(b'<165>1 2003-10-11T22:14:15.003Z h app 12 ID47 [a@1 k="v w"] the msg')
    s = parse_line(format_line(r))
    assert s is not None
    assert (s.ts_text, s.host, s.app, s.procid, s.msgid) == (
        "2003-10-11T22:14:15.003000Z", "h", "app", "12", "ID47",
    )  # fmt: skip
    assert (s.facility, s.severity, s.severity_code) == ("local4", "notice", 5)
    assert s.message() == "the msg"
    assert parse_line("garbage\n") is None


def test_encode_rfc5424_round_trip() -> None:
    r = parse(b'<165>1 2003-10-11T22:14:15.003Z h app 12 ID47 [a@1 k="v"] the msg')
    again = parse(encode_rfc5424(r))
    assert (again.pri, again.hostname, again.app_name, again.procid, again.msgid) == (
        165, "h", "app", "12", "ID47",
    )  # fmt: skip
    assert (again.structured_data, again.msg, again.ts) == (r.structured_data, r.msg, r.ts)
    # a 3164 record without hostname gets the sender's address (RFC 5424 6.2.4)
    assert b" 127.0.0.1 " in encode_rfc5424(parse(b"<14>x"))


def test_rfc3339() -> None:
    assert parse_rfc3339("2003-10-11T22:14:15.003Z") == pytest.approx(1065910455.003)
    assert parse_rfc3339("2003-10-11T22:14:15") is None
    assert parse_rfc3339("2003-13-11T22:14:15Z") is None


# ---- framing -----------------------------------------------------------------------------------


def frames(chunks: list[bytes], limit: int = 65536) -> list[tuple[bytes, bool]]:
    f = TcpFramer(limit)
    out = []
    for c in chunks:
        out += f.feed(c)
    return out + f.close()


def test_octet_counting_back_to_back_with_lf_inside() -> None:
    m1, m2 = b"<13>1 - h a - - - two\nlines\n", b"<14>second"
    assert frames([frame_octet_counted(m1) + frame_octet_counted(m2)]) == [
        (m1, False),
        (m2, False),
    ]


def test_lf_framing_mixed_formats_and_crlf() -> None:
    data = b"<13>Nov 28 08:00:00 h t: a\r\n<13>1 - h a - - - b\n"
    assert frames([data]) == [
        (b"<13>Nov 28 08:00:00 h t: a", False),
        (b"<13>1 - h a - - - b", False),
    ]


def test_nul_framing_keeps_lf() -> None:
    f = TcpFramer()
    assert f.feed(b"<14>one\x00<14>two\nlines\x00") == [
        (b"<14>one", False),
        (b"<14>two\nlines", False),
    ]
    assert f.mode == "nul"


def test_unterminated_last_frame_at_close() -> None:
    assert frames([b"<14>a\n<14>no terminator"]) == [
        (b"<14>a", False),
        (b"<14>no terminator", False),
    ]


def test_oversize_frames_truncated_not_fatal() -> None:
    big = b"<13>" + b"x" * 1000
    assert frames([big + b"\n<13>ok\n"], limit=500) == [(big[:500], True), (b"<13>ok", False)]
    out = frames([frame_octet_counted(big) + frame_octet_counted(b"<13>ok")], limit=500)
    assert out == [(big[:500], True), (b"<13>ok", False)]


def test_framer_limit_must_allow_480_octets() -> None:
    with pytest.raises(ValueError):
        TcpFramer(100)


# ---- properties --------------------------------------------------------------------------------

messages = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda pri, host, body: b"<%d>1 - %b app - - - %b" % (pri, host, body),
        st.integers(0, 191),
        st.sampled_from([b"-", b"h1", b"web-2"]),
        st.binary(max_size=40),
    ),
    st.builds(lambda body: b"<14>ident[1]: " + body, st.binary(max_size=40)),
)


def split_points(data: bytes) -> st.SearchStrategy[list[bytes]]:
    def cut(points: list[int]) -> list[bytes]:
        points = sorted(set(points))
        out, prev = [], 0
        for p in points:
            out.append(data[prev:p])
            prev = p
        out.append(data[prev:])
        return out

    return st.lists(st.integers(0, len(data)), max_size=8).map(cut)


syslogish = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda pri, ts, body: pri + ts + body,
        st.sampled_from([b"<13>", b"<0>", b"<191>", b"<013>", b"<192>", b"<>", b"<1", b""]),
        st.sampled_from(
            [
                b"",
                b"Feb  5 10:00:00 ",
                b"Feb 31 10:00:00 ",
                b"Feb 29 10:00:00 2023 ",
                b"2026-11-28T08:00:00Z ",
                b"2026-13-28T08:00:00Z ",
                b"123: *Mar  1 18:46:11.123: ",
                b"1 ",
                b"1 - ",
                b"1 2026-11-28T08:00:00Z h a p m [x",
                b"1 - - - - - - ",
            ]
        ),
        st.binary(max_size=60),
    ),
)


@settings(max_examples=300, deadline=None)
@given(syslogish)
def test_any_input_gives_a_record(data: bytes) -> None:
    r = parse(data)
    assert not (r.note or "").startswith("parser-error"), r  # the safety net never fires
    line = format_line(r)
    assert line.endswith("\n") and line.count("\n") == 1
    assert parse_line(line) is not None
    encode_rfc5424(r)


@settings(max_examples=100, deadline=None)
@given(
    st.data(), st.lists(messages, min_size=1, max_size=6), st.sampled_from(["octet", "lf", "nul"])
)
def test_any_split_frames_the_same(data: st.DataObject, msgs: list[bytes], framing: str) -> None:
    if framing == "octet":
        stream = b"".join(frame_octet_counted(m) for m in msgs)
    else:
        term = b"\n" if framing == "lf" else b"\x00"
        stream = b"".join(m.replace(term, b"") + term for m in msgs)
    whole = frames([stream], limit=480)
    chunks = data.draw(split_points(stream))
    assert frames(chunks, limit=480) == whole
    if framing == "octet" and all(0 < len(m) <= 480 for m in msgs):
        assert [f for f, _ in whole] == msgs


@settings(max_examples=150, deadline=None)
@given(st.data(), st.binary(max_size=400))
def test_any_split_of_garbage_frames_the_same(data: st.DataObject, stream: bytes) -> None:
    whole = frames([stream], limit=480)
    assert frames(data.draw(split_points(stream)), limit=480) == whole
    for frame, _ in whole:
        assert len(frame) <= 480


# ---- the fused fast path agrees with the general parser ------------------------------------

fast_messages = st.builds(
    lambda pri, ts, fields, sd, sp, msg: (
        b"<%b>1 %b %b %b%b%b" % (pri, ts, b" ".join(fields), sd, sp, msg)
    ),
    st.sampled_from([b"0", b"13", b"134", b"191", b"192", b"013", b"999"]),
    st.sampled_from(
        [
            b"2026-11-28T08:00:00.123456Z",
            b"2026-11-28t08:00:00.123456Z",
            b"2026-11-28T08:00:00.123456z",
            b"2026-02-30T08:00:00.000001Z",
            b"0999-01-01T00:00:00.000000Z",
            b"2026-11-28T08:00:00Z",
            b"2026-11-28T08:00:00.1+01:00",
            b"-",
        ]
    ),
    st.lists(
        st.sampled_from([b"-", b"host", b"app", b"p1", b"\xc3\xa9", b"a\tb"]),
        min_size=4,
        max_size=4,
    ),
    st.sampled_from([b"-", b'[a@1 k="v"]', b'[a@1 k="\\"x\\]"][b c="\n"]', b"[bad", b"-x"]),
    st.sampled_from([b" ", b"  ", b"", b" \xef\xbb\xbf"]),
    st.binary(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(fast_messages)
def test_fast_line_equals_general_path(data: bytes) -> None:
    got = fast_line(data, b"10.0.0.1", b"fmt=5424,src=10.0.0.1")
    if got is not None:
        rec = parse_message(data, received=NOW, source="10.0.0.1")
        assert got[0] == format_line(rec).encode()
        assert got[1].decode() == rec.host_or_source()
        assert got[3] == rec.pri


def test_fast_line_takes_the_common_shape() -> None:
    data = b'<134>1 2026-11-28T08:00:00.123456Z h app 12 ID [timeQuality tzKnown="1"] text'
    got = fast_line(data, b"10.0.0.1", b"fmt=5424,src=10.0.0.1")
    assert got is not None and got[1:] == (b"h", b"app", 134)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(fast_messages, min_size=1, max_size=5))
def test_framer_printable_flag_is_honest(data: st.DataObject, msgs: list[bytes]) -> None:
    stream = b"".join(m.replace(b"\n", b"") + b"\n" for m in msgs)
    f = TcpFramer(480)
    for chunk in data.draw(split_points(stream)):
        for frame, truncated in f.feed(chunk):
            if f.printable and not truncated:
                assert frame.isascii() and all(32 <= b < 127 for b in frame)
                assert fast_line(frame, b"h", b"m", True) == fast_line(frame, b"h", b"m")


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(fast_messages, min_size=1, max_size=5), st.sampled_from([b"", b"\n"]))
def test_octet_framer_printable_flag_is_honest(
    data: st.DataObject, msgs: list[bytes], sep: bytes
) -> None:
    stream = b"".join(frame_octet_counted(m) + sep for m in msgs)
    f = TcpFramer(480)
    got = []
    for chunk in data.draw(split_points(stream)):
        for frame, truncated in f.feed(chunk):
            got.append(frame)
            if f.printable and not truncated:
                assert frame.isascii() and all(32 <= b < 127 for b in frame)
    got += [fr for fr, _ in f.close()]
    if all(len(m) <= 480 for m in msgs):
        assert got == msgs


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1_700_000_000, 1_900_000_000), min_size=1, max_size=6),
    st.sampled_from(
        [b"Jan  1 00:00:00", b"Dec 31 23:59:59", b"Feb 29 12:00:00", b"Jul 14 08:00:00"]
    ),
)
def test_bsd_timestamp_memo_matches_direct_computation(received: list[int], stamp: bytes) -> None:
    for now in received:
        r = parse_message(b"<13>" + stamp + b" h t: x", received=float(now))
        mon, day, hms = stamp.split(None, 2)
        hh, mm, ss = (int(x) for x in hms.split(b":"))
        months = [
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ]
        want = bsd_timestamp(months.index(mon.decode()) + 1, int(day), hh, mm, ss, now, dt.UTC)
        assert (r.ts if r.note is None else None) == want
