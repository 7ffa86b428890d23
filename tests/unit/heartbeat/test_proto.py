from __future__ import annotations

import hashlib
import hmac

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.errors import ProtocolError
from hastack.heartbeat.proto import (
    MAGIC,
    NODE_STATES,
    Codec,
    Message,
    Rejected,
    ReplayGuard,
    garp_frame,
    icmp_checksum,
    icmp_echo_request,
    mac_bytes,
    parse_arp,
    parse_icmp_echo_reply,
    parse_key_spec,
)

KEYS = {1: b"old-secret", 2: b"new-secret"}


def msg(**kw: object) -> Message:
    base: dict[str, object] = dict(
        type="hb", cluster="hastack", node="n2", boot=10, seq=1, timestamp=1000.0
    )
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


messages = st.builds(
    Message,
    type=st.sampled_from(["hb", "bye"]),
    cluster=st.just("hastack"),
    node=st.text(max_size=20),
    boot=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    timestamp=st.floats(allow_nan=False, allow_infinity=False),
    priority=st.integers(-(2**31), 2**31 - 1),
    address=st.text(max_size=40),
    state=st.sampled_from(NODE_STATES),
    eligible=st.booleans(),
    claim=st.booleans(),
    want=st.booleans(),
    vote=st.none() | st.text(max_size=20),
    vote_boot=st.integers(0, 2**64 - 1),
    vote_seq=st.integers(0, 2**64 - 1),
    group=st.sampled_from(["default", "web-a", "b"]) | st.text(max_size=20),
)


@settings(max_examples=150)
@given(messages)
def test_round_trip(m: Message) -> None:
    codec = Codec(KEYS, 2)
    assert codec.decode(codec.encode(m)) == m


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    codec = Codec(KEYS, 1)
    with pytest.raises(ProtocolError):
        codec.decode(data)


@settings(max_examples=200)
@given(st.binary(max_size=120))
def test_authenticated_garbage_body_rejected_as_malformed(body: bytes) -> None:
    # an attacker who knows a key can still only produce ProtocolError with garbage bodies
    header = MAGIC + bytes((1, 1))
    mac = hmac.new(KEYS[1], header + body, hashlib.sha256).digest()
    codec = Codec(KEYS, 1)
    try:
        codec.decode(header + mac + body)
    except Rejected as exc:
        assert exc.reason in ("malformed", "short", "wrong_cluster")


@settings(max_examples=100)
@given(messages, st.integers(0, 400), st.integers(0, 7))
def test_any_bit_flip_is_rejected(m: Message, pos: int, bit: int) -> None:
    codec = Codec(KEYS, 1)
    data = bytearray(codec.encode(m))
    pos %= len(data)
    data[pos] ^= 1 << bit
    with pytest.raises(Rejected):
        codec.decode(bytes(data))


def test_key_rollover() -> None:
    old = Codec({1: b"old-secret"}, 1)
    both_old = Codec(KEYS, 1)
    both_new = Codec(KEYS, 2)
    new = Codec({2: b"new-secret"}, 2)
    m = msg()
    for sender in (old, both_old):
        assert both_new.decode(sender.encode(m)) == m
    for sender in (both_new, new):
        assert both_old.decode(sender.encode(m)) == m
    with pytest.raises(Rejected) as info:
        old.decode(new.encode(m))
    assert info.value.reason == "unknown_key"
    wrong = Codec({1: b"other"}, 1)
    with pytest.raises(Rejected) as info:
        old.decode(wrong.encode(m))
    assert info.value.reason == "bad_mac"


def test_rejection_reasons() -> None:
    codec = Codec(KEYS, 1)
    good = codec.encode(msg())
    cases = {
        "short": good[:10],
        "too_large": good + b"x" * 2000,
        "bad_magic": b"XX" + good[2:],
        "bad_version": good[:2] + b"\x09" + good[3:],
        "unknown_key": good[:3] + b"\x07" + good[4:],
    }
    for reason, data in cases.items():
        with pytest.raises(Rejected) as info:
            codec.decode(data)
        assert info.value.reason == reason
    other_cluster = Codec(KEYS, 1, cluster="other").encode(msg(cluster="other"))
    with pytest.raises(Rejected) as info:
        codec.decode(other_cluster)
    assert info.value.reason == "wrong_cluster"


def _signed(body: object) -> bytes:
    raw = msgpack.packb(body)
    header = MAGIC + bytes((1, 1))
    return header + hmac.new(KEYS[1], header + raw, hashlib.sha256).digest() + raw


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"t": "hb"},
        {"t": "zz", "c": "hastack", "n": "a", "b": 1, "q": 1, "ts": 1.0},
        {"t": "hb", "c": "hastack", "n": "a", "b": -1, "q": 1, "ts": 1.0},
        {"t": "hb", "c": "hastack", "n": "a", "b": 1, "q": 1, "ts": float("nan")},
        {"t": "hb", "c": "hastack", "n": "a", "b": 1, "q": 1, "ts": 1.0, "s": "boss"},
        {"t": "hb", "c": "hastack", "n": "a", "b": 1, "q": 1, "ts": 1.0, "zz": 1},
        {"t": "hb", "c": "hastack", "n": 5, "b": 1, "q": 1, "ts": 1.0},
        {"t": "hb", "c": "hastack", "n": "a", "b": 1, "q": True, "ts": 1.0},
    ],
)
def test_malformed_bodies(body: object) -> None:
    with pytest.raises(Rejected) as info:
        Codec(KEYS, 1).decode(_signed(body))
    assert info.value.reason == "malformed"


def test_replay_guard() -> None:
    guard = ReplayGuard("n1", max_clock_skew=5.0)
    guard.accept(msg(seq=5), 1000.0)
    for m, reason in [
        (msg(seq=5), "replay"),
        (msg(seq=4), "replay"),
        (msg(boot=9, seq=100), "old_boot"),
        (msg(seq=6, timestamp=900.0), "clock_window"),
        (msg(node="n1", seq=99), "own_message"),
    ]:
        with pytest.raises(Rejected) as info:
            guard.accept(m, 1000.0)
        assert info.value.reason == reason
    guard.accept(msg(seq=6), 1000.0)
    guard.accept(msg(boot=11, seq=1), 1000.0)  # restarted sender: new boot, seq starts again
    with pytest.raises(Rejected):
        guard.accept(msg(boot=10, seq=7), 1000.0)


def test_default_group_is_left_off_the_wire() -> None:
    # a single-group cluster sends the same bytes as before groups existed (rolling upgrade)
    codec = Codec(KEYS, 1)
    plain = codec.encode(msg())
    assert b"\xa1g" not in plain[36:] and codec.decode(plain).group == "default"
    named = codec.encode(msg(group="web-b"))
    assert b"\xa1g" in named[36:] and codec.decode(named).group == "web-b"


def test_replay_guard_counts_each_group_separately() -> None:
    # every group's election numbers its own messages
    guard = ReplayGuard("n1")
    guard.accept(msg(seq=5, group="a"), 1000.0)
    guard.accept(msg(seq=2, group="b"), 1000.0)
    with pytest.raises(Rejected) as info:
        guard.accept(msg(seq=2, group="b"), 1000.0)
    assert info.value.reason == "replay"
    guard.accept(msg(seq=6, group="a"), 1000.0)


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 20)), max_size=40))
def test_replay_guard_accepts_only_increasing(pairs: list[tuple[int, int]]) -> None:
    guard = ReplayGuard("me")
    accepted: list[tuple[int, int]] = []
    for boot, seq in pairs:
        try:
            guard.accept(msg(boot=boot, seq=seq), 1000.0)
        except Rejected:
            continue
        accepted.append((boot, seq))
    assert accepted == sorted(set(accepted))


def test_garp_frames() -> None:
    mac = mac_bytes("02:13:00:00:00:11")
    ip = bytes((10, 213, 0, 50))
    req = garp_frame(mac, ip)
    assert len(req) == 42 and req[:6] == b"\xff" * 6
    assert parse_arp(req) == (1, mac, ip, b"\x00" * 6, ip)
    rep = garp_frame(mac, ip, reply=True)
    assert parse_arp(rep) == (2, mac, ip, mac, ip)
    with pytest.raises(ProtocolError):
        parse_arp(b"\x00" * 10)


def test_icmp() -> None:
    pkt = icmp_echo_request(0x1234, 7)
    assert icmp_checksum(pkt) == 0
    reply = b"\x00" + pkt[1:]
    assert parse_icmp_echo_reply(reply) == (0x1234, 7)
    ip_header = bytes([0x45]) + b"\x00" * 19
    assert parse_icmp_echo_reply(ip_header + reply) == (0x1234, 7)
    assert parse_icmp_echo_reply(pkt) is None


def test_key_spec() -> None:
    assert parse_key_spec("hex:00ff") == b"\x00\xff"
    assert parse_key_spec("secret") == b"secret"


def test_parse_authkeys() -> None:
    from hastack.heartbeat.proto import parse_authkeys

    text = "# sample\nauth 2\n1 sha1 old-secret\n2 sha1 new secret with spaces\n3 md5 x\n"
    assert parse_authkeys(text) == (
        2, {1: b"old-secret", 2: b"new secret with spaces", 3: b"x"})
    for bad in ("1 sha1 a\n", "auth 1\nauth 1\n1 sha1 a\n", "auth 1\n1 crc\n",
                "auth 1\n1 sha1\n", "auth 2\n1 sha1 a\n", "auth 1\n0 sha1 a\n",
                "auth 1\n1 sha256 a\n"):
        with pytest.raises(ValueError):
            parse_authkeys(bad)
