"""Sans-I/O codec for heartbeat datagrams.

One datagram carries one message. Layout (all integers big-endian)::

    magic  b"HB"          2 bytes
    version 1             1 byte
    key id 1..255         1 byte   (like ``auth N`` in Heartbeat's authkeys)
    mac                   32 bytes HMAC-SHA256(key[key_id], magic|version|key_id|body)
    body                  msgpack map (see ``Message``)

Receivers accept any configured key (key rollover without downtime: add the new key on every
node, switch ``send_key`` node by node, then drop the old key); senders use exactly one.

Resource groups: a node runs one election per group (haresources' several lines) over the
same socket and keys; every message names its group (``g``, left out for the ``default``
group, so a single-group cluster sends exactly what it sent before groups existed).

Replay protection (``ReplayGuard``): every sender has a boot id (its start time in ns, so a
restarted node always has a larger one) and a per-boot sequence number that only grows.
A datagram is accepted only if its (boot, seq) is newer than the last accepted one from that
node for that group (each group's election counts its own sequence), and its timestamp is
within ``max_clock_skew`` of the receiver's clock (so a capture replayed after the receiver
restarted, when it has no (boot, seq) memory yet, is still refused).

Nothing here does I/O or reads a clock: ``now`` is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from hastack.errors import ProtocolError

MAGIC = b"HB"
VERSION = 1
HEADER_BYTES = 4
MAC_BYTES = 32

MessageType = Literal["hb", "bye"]
NodeState = Literal["init", "backup", "master", "fault"]
NODE_STATES: tuple[NodeState, ...] = ("init", "backup", "master", "fault")
MESSAGE_TYPES: tuple[MessageType, ...] = ("hb", "bye")
DEFAULT_GROUP = "default"  # the group of a config without [[heartbeat.groups]]

# Rejection reasons (stable strings: they are the labels of the ``rejected_*`` counters).
R_SHORT = "short"
R_TOO_LARGE = "too_large"
R_MAGIC = "bad_magic"
R_VERSION = "bad_version"
R_KEY = "unknown_key"
R_MAC = "bad_mac"
R_BODY = "malformed"
R_CLUSTER = "wrong_cluster"
R_SELF = "own_message"
R_CLOCK = "clock_window"
R_REPLAY = "replay"
R_OLD_BOOT = "old_boot"
R_GROUP = "unknown_group"  # a resource group this node does not run (configs differ)
REJECT_REASONS = (
    R_SHORT,
    R_TOO_LARGE,
    R_MAGIC,
    R_VERSION,
    R_KEY,
    R_MAC,
    R_BODY,
    R_CLUSTER,
    R_SELF,
    R_CLOCK,
    R_REPLAY,
    R_OLD_BOOT,
    R_GROUP,
)


class Rejected(ProtocolError):
    """A datagram that must be ignored; ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, b"", fatal=False)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """One heartbeat (``hb``) or resign (``bye``) message.

    ``vote``/``vote_boot``/``vote_seq``: the node this sender currently supports as master and
    the last (boot, seq) it heard from that node: the echo the master turns into a lease.
    ``group``: the resource group whose election this message belongs to.
    """

    type: MessageType
    cluster: str
    node: str
    boot: int
    seq: int
    timestamp: float
    priority: int = 0
    address: str = ""
    state: NodeState = "init"
    eligible: bool = False
    claim: bool = False
    want: bool = False
    vote: str | None = None
    vote_boot: int = 0
    vote_seq: int = 0
    group: str = DEFAULT_GROUP
    extra: Mapping[str, Any] = field(default_factory=dict)


_KEYS = {
    "t": "type",
    "c": "cluster",
    "n": "node",
    "b": "boot",
    "q": "seq",
    "ts": "timestamp",
    "p": "priority",
    "a": "address",
    "s": "state",
    "e": "eligible",
    "cl": "claim",
    "w": "want",
    "v": "vote",
    "vb": "vote_boot",
    "vq": "vote_seq",
    "g": "group",
    "x": "extra",
}


def _pack_body(msg: Message) -> bytes:
    body: dict[str, Any] = {
        "t": msg.type,
        "c": msg.cluster,
        "n": msg.node,
        "b": msg.boot,
        "q": msg.seq,
        "ts": msg.timestamp,
        "p": msg.priority,
        "a": msg.address,
        "s": msg.state,
        "e": msg.eligible,
        "cl": msg.claim,
        "w": msg.want,
        "v": msg.vote,
        "vb": msg.vote_boot,
        "vq": msg.vote_seq,
    }
    if msg.group != DEFAULT_GROUP:
        body["g"] = msg.group
    if msg.extra:
        body["x"] = dict(msg.extra)
    return msgpack.packb(body, use_bin_type=True)


def _int(v: Any, name: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise Rejected(R_BODY, f"{name} must be an integer in [{lo}, {hi}]")
    return v


def _str(v: Any, name: str, max_len: int = 255) -> str:
    if not isinstance(v, str) or len(v) > max_len:
        raise Rejected(R_BODY, f"{name} must be a string of at most {max_len} characters")
    return v


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise Rejected(R_BODY, f"{name} must be a boolean")
    return v


def _unpack_body(raw: bytes) -> Message:
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_str_len=4096,
                               max_bin_len=4096, max_array_len=256, max_map_len=64)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            TypeError, UnicodeDecodeError) as exc:
        raise Rejected(R_BODY, f"not msgpack: {exc.__class__.__name__}") from None
    if not isinstance(body, dict):
        raise Rejected(R_BODY, "body is not a map")
    unknown = set(body) - set(_KEYS)
    if unknown:
        raise Rejected(R_BODY, f"unknown fields {sorted(map(str, unknown))}")
    for required in ("t", "c", "n", "b", "q", "ts"):
        if required not in body:
            raise Rejected(R_BODY, f"missing field {_KEYS[required]}")
    mtype = body["t"]
    if mtype not in MESSAGE_TYPES:
        raise Rejected(R_BODY, "unknown message type")
    ts = body["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise Rejected(R_BODY, "timestamp must be a finite number")
    state = body.get("s", "init")
    if state not in NODE_STATES:
        raise Rejected(R_BODY, "unknown state")
    vote = body.get("v")
    if vote is not None:
        vote = _str(vote, "vote")
    extra = body.get("x", {})
    if not isinstance(extra, dict):
        raise Rejected(R_BODY, "extra must be a map")
    return Message(
        type=mtype,
        cluster=_str(body["c"], "cluster"),
        node=_str(body["n"], "node"),
        boot=_int(body["b"], "boot"),
        seq=_int(body["q"], "seq"),
        timestamp=float(ts),
        priority=_int(body.get("p", 0), "priority", -(2**31), 2**31 - 1),
        address=_str(body.get("a", ""), "address"),
        state=state,
        eligible=_bool(body.get("e", False), "eligible"),
        claim=_bool(body.get("cl", False), "claim"),
        want=_bool(body.get("w", False), "want"),
        vote=vote,
        vote_boot=_int(body.get("vb", 0), "vote_boot"),
        vote_seq=_int(body.get("vq", 0), "vote_seq"),
        group=_str(body.get("g", DEFAULT_GROUP), "group"),
        extra=extra,
    )


class Codec:
    """Encode and authenticate messages; verify and decode datagrams.

    ``keys``: key id (1..255) -> secret; ``send_key``: the id used for sending.
    """

    def __init__(
        self,
        keys: Mapping[int, bytes],
        send_key: int,
        *,
        cluster: str = "hastack",
        # Largest datagram accepted or produced; one Ethernet MTU minus IP/UDP headers, so a
        # heartbeat never fragments (Heartbeat's own MAXMSG is 40000 bytes, but its heartbeats
        # are a few hundred bytes).
        max_datagram_bytes: int = 1472,
    ) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        for kid, secret in keys.items():
            if not 1 <= kid <= 255:
                raise ValueError(f"key id {kid} out of range 1..255")
            if not secret:
                raise ValueError(f"key {kid} is empty")
        if send_key not in keys:
            raise ValueError(f"send_key {send_key} is not one of the configured keys")
        self.keys = dict(keys)
        self.send_key = send_key
        self.cluster = cluster
        self.max_datagram_bytes = max_datagram_bytes

    def encode(self, msg: Message) -> bytes:
        header = MAGIC + bytes((VERSION, self.send_key))
        body = _pack_body(msg)
        mac = hmac.new(self.keys[self.send_key], header + body, hashlib.sha256).digest()
        data = header + mac + body
        if len(data) > self.max_datagram_bytes:
            raise ValueError(f"message of {len(data)} bytes exceeds max_datagram_bytes")
        return data

    def decode(self, data: bytes) -> Message:
        """Verify and parse one datagram; raises ``Rejected`` (a ProtocolError) only."""
        if len(data) > self.max_datagram_bytes:
            raise Rejected(R_TOO_LARGE, f"{len(data)} bytes")
        if len(data) < HEADER_BYTES + MAC_BYTES + 1:
            raise Rejected(R_SHORT, f"{len(data)} bytes")
        data = bytes(data)
        if data[:2] != MAGIC:
            raise Rejected(R_MAGIC)
        if data[2] != VERSION:
            raise Rejected(R_VERSION, f"version {data[2]}")
        key = self.keys.get(data[3])
        if key is None:
            raise Rejected(R_KEY, f"key id {data[3]}")
        header = data[:HEADER_BYTES]
        mac = data[HEADER_BYTES : HEADER_BYTES + MAC_BYTES]
        body = data[HEADER_BYTES + MAC_BYTES :]
        expected = hmac.new(key, header + body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise Rejected(R_MAC)
        msg = _unpack_body(body)
        if msg.cluster != self.cluster:
            raise Rejected(R_CLUSTER, msg.cluster)
        return msg


class ReplayGuard:
    """Per-sender (and per-group) (boot, seq) memory and a timestamp window.

    ``accept(msg, now)`` raises ``Rejected`` for replays and out-of-window timestamps and
    otherwise records the message as the newest from its sender.
    """

    def __init__(
        self,
        own_node: str,
        *,
        # How far a sender's clock may differ from ours. Heartbeat has no such window (it only
        # tracks sequence numbers); 30 s tolerates NTP-synced hosts and refuses old captures.
        max_clock_skew: float = 30.0,
        # (sender, group) pairs remembered; more than any sane cluster, bounded against forged
        # names (which cannot pass the MAC anyway).
        max_senders: int = 256,
    ) -> None:
        self.own_node = own_node
        self.max_clock_skew = max_clock_skew
        self.max_senders = max_senders
        self.last: dict[tuple[str, str], tuple[int, int]] = {}

    def check(self, msg: Message, now: float) -> None:
        if msg.node == self.own_node:
            raise Rejected(R_SELF)
        if abs(msg.timestamp - now) > self.max_clock_skew:
            raise Rejected(R_CLOCK, f"timestamp off by {msg.timestamp - now:+.3f} s")
        prev = self.last.get((msg.node, msg.group))
        if prev is not None:
            boot, seq = prev
            if msg.boot < boot:
                raise Rejected(R_OLD_BOOT, f"boot {msg.boot} < {boot}")
            if msg.boot == boot and msg.seq <= seq:
                raise Rejected(R_REPLAY, f"seq {msg.seq} <= {seq}")
        elif len(self.last) >= self.max_senders:
            raise Rejected(R_BODY, "too many distinct senders and groups")

    def accept(self, msg: Message, now: float) -> None:
        self.check(msg, now)
        self.last[(msg.node, msg.group)] = (msg.boot, msg.seq)


def parse_key_spec(spec: str) -> bytes:
    """Secrets in config are text; ``hex:...`` gives raw bytes."""
    if spec.startswith("hex:"):
        return bytes.fromhex(spec[4:])
    return spec.encode()


# --- gratuitous ARP -------------------------------------------------------------------------

ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def garp_frame(mac: bytes, ip: bytes, *, reply: bool = False) -> bytes:
    """An Ethernet frame announcing ``ip`` at ``mac``.

    Request form (op 1, target MAC zero) is what keepalived and ``arping -U`` send; reply form
    (op 2, target MAC = own MAC, which Linux's ``arp_is_garp()`` requires) is ``arping -A``.
    Sender IP = target IP = the announced address.
    """
    if len(mac) != 6 or len(ip) != 4:
        raise ValueError("need a 6-byte MAC and a 4-byte IPv4 address")
    op = 2 if reply else 1
    target_mac = mac if reply else b"\x00" * 6
    eth = BROADCAST_MAC + mac + ETH_P_ARP.to_bytes(2, "big")
    arp = (
        (1).to_bytes(2, "big")  # hardware type Ethernet
        + (0x0800).to_bytes(2, "big")  # protocol IPv4
        + bytes((6, 4))
        + op.to_bytes(2, "big")
        + mac
        + ip
        + target_mac
        + ip
    )
    return eth + arp


def parse_arp(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
    """(op, sender MAC, sender IP, target MAC, target IP) of an Ethernet ARP frame."""
    if len(frame) < 42 or frame[12:14] != ETH_P_ARP.to_bytes(2, "big"):
        raise ProtocolError("not an ARP frame")
    arp = frame[14:42]
    op = int.from_bytes(arp[6:8], "big")
    return op, arp[8:14], arp[14:18], arp[18:24], arp[24:28]


# --- ICMP echo (ping targets) ---------------------------------------------------------------


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_echo_request(ident: int, seq: int, payload: bytes = b"hastack") -> bytes:
    head = bytes((8, 0)) + b"\x00\x00" + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    csum = icmp_checksum(head + payload)
    return head[:2] + csum.to_bytes(2, "big") + head[4:] + payload


def parse_icmp_echo_reply(data: bytes) -> tuple[int, int] | None:
    """(ident, seq) of an echo reply (with or without a leading IPv4 header), else None."""
    if len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        data = data[ihl:]
    if len(data) < 8 or data[0] != 0:
        return None
    return int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")


# --- Heartbeat's authkeys file --------------------------------------------------------------


def parse_authkeys(text: str) -> tuple[int, dict[int, bytes]]:
    """Parse a Heartbeat ``authkeys`` file: ``auth N`` then ``N method secret`` lines.

    hastack always signs with HMAC-SHA256; the method names only say where the secret is
    (``sha1``/``md5``). ``crc`` has no secret (integrity only, no authentication): refused.
    """
    send: int | None = None
    keys: dict[int, bytes] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if parts[0] == "auth":
            if len(parts) != 2 or not parts[1].isdigit() or send is not None:
                raise ValueError(f"line {lineno}: expected one 'auth N' line")
            send = int(parts[1])
            continue
        if not parts[0].isdigit() or not 1 <= int(parts[0]) <= 255:
            raise ValueError(f"line {lineno}: expected 'N method secret' with N in 1-255")
        if len(parts) < 2 or parts[1] not in ("sha1", "md5", "crc"):
            raise ValueError(f"line {lineno}: method must be sha1, md5 or crc")
        if parts[1] == "crc":
            raise ValueError(f"line {lineno}: crc authenticates nothing; use sha1 with a secret")
        if len(parts) < 3 or not parts[2].strip():
            raise ValueError(f"line {lineno}: missing secret")
        keys[int(parts[0])] = parts[2].strip().encode()
    if send is None:
        raise ValueError("no 'auth N' line")
    if send not in keys:
        raise ValueError(f"auth {send}: no such key")
    return send, keys
