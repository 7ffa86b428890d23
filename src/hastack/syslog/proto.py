"""Sans-I/O syslog codec: RFC 3164 / RFC 5424 parsing, RFC 6587 TCP framing, encoders.

Three pieces, none of which does I/O:

* ``TcpFramer``: bytes of one TCP (or TLS) connection in, message payloads out. It handles
  both RFC 6587 framings -- octet counting (``LEN SP MSG``) and non-transparent framing with
  an LF or NUL trailer (Python's ``SysLogHandler`` terminates with NUL only) -- and picks the
  framing per connection from the first frame, falling back per frame when a frame clearly
  uses the other one. Oversized messages are truncated to ``max_message_bytes`` (the rest is
  skipped) instead of closing the connection (syslog-ng #881 asks for exactly that).
* ``parse_message``: one payload in, one ``SyslogRecord`` out. It never raises: a payload it
  cannot make sense of becomes a ``raw`` record carrying the original text and a note.
* Encoders: ``format_line`` (the stable on-disk line), ``parse_line`` (reading it back),
  ``encode_rfc5424`` and ``frame_octet_counted`` (forwarding).
* ``fast_line``: the collector's hot path. For the most common RFC 5424 shape (canonical UTC
  timestamp, printable ASCII) it goes from payload straight to the on-disk line as bytes; it is
  property-tested to equal ``format_line(parse_message(...))`` and returns None for anything
  else, which then takes the general path.

The on-disk line (version 1) is nine space-separated fields followed by the message::

    TS HOST APP PROCID MSGID FACILITY.SEVERITY META SD MSG

``TS`` is the message time normalised to UTC with microseconds (fixed width, so lines sort
as text), absent fields are ``-``, ``META`` is ``fmt=5424|3164|raw,src=ADDRESS`` plus
``note=...`` and ``ots=ORIGINAL-TIMESTAMP`` when the parser had something to say, ``SD`` is
the original structured data text, and control characters in ``MSG`` are written as
``#ooo`` (octal, like rsyslog's default ``$EscapeControlCharactersOnReceive``).
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass
from typing import Final, Literal

SEVERITIES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES: Final = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITY_BY_NAME: Final = {name: i for i, name in enumerate(SEVERITIES)} | {
    "emergency": 0, "panic": 0, "critical": 2, "error": 3, "warn": 4, "informational": 6,
}  # fmt: skip
FACILITY_BY_NAME: Final = {name: i for i, name in enumerate(FACILITIES)}

# RFC 3164 section 4.1 / RFC 5424 section 6.1: the default when there is no valid PRI.
DEFAULT_PRI: Final = 13  # user.notice

# syslog-ng's log-msg-size default is 65536; rsyslog's $MaxMessageSize default is 8096.
# RFC 5425 says receivers must accept 2048 octets and should accept 8192.
DEFAULT_MAX_MESSAGE_BYTES: Final = 65536

Format = Literal["5424", "3164", "raw"]

_BOM: Final = b"\xef\xbb\xbf"
_MONTHS: Final = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}


@dataclass(slots=True)
class SyslogRecord:
    """One received message, as parsed (``None`` = absent / NILVALUE)."""

    ts: float  # message time (epoch seconds); the receive time when the message had none
    facility: int
    severity: int
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None  # the original SD text, e.g. '[origin ip="1.2.3.4"]'
    msg: str
    fmt: Format
    source: str = "-"  # sender address (set by the server)
    note: str | None = None  # why parsing was partial, e.g. "no-pri", "bad-sd"
    original_ts: str | None = None  # the timestamp text when it could not be normalised

    @property
    def pri(self) -> int:
        return self.facility * 8 + self.severity

    def sd_elements(self) -> list[tuple[str, list[tuple[str, str]]]]:
        return parse_structured_data(self.structured_data or "")

    def host_or_source(self) -> str:
        return self.hostname or self.source


# --------------------------------------------------------------------------------------------
# Timestamps


class _TimeCache:
    """Small memo of timestamp text -> epoch (a busy sender repeats the same second)."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.entries: dict[object, float | None] = {}
        self.limit = limit

    def put(self, key: object, value: float | None) -> None:
        if len(self.entries) >= self.limit:
            self.entries.clear()
        self.entries[key] = value


_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:?\d\d)?\Z"
)
_rfc3339_cache = _TimeCache()


def parse_rfc3339(text: str) -> float | None:
    """RFC 3339 / RFC 5424 timestamp -> epoch seconds; None if invalid or without an offset."""
    # Fast path: memoise the whole-second part (with its zone); add the fraction.
    if len(text) > 20 and text[19] == ".":
        end = 20
        n = len(text)
        while end < n and "0" <= text[end] <= "9":
            end += 1
        if 20 < end <= 29:
            base = parse_rfc3339(text[:19] + text[end:])
            if base is None:
                return None
            digits = text[20:end]
            return base + int(digits) / 10 ** len(digits)
    cached = _rfc3339_cache.entries.get(text, -1.0)
    if cached != -1.0:
        return cached
    value: float | None = None
    m = _RFC3339.match(text)
    if m is not None and m.group(8) is not None:
        year, month, day, hh, mm, ss, frac, zone = m.groups()
        try:
            if zone in ("Z", "z"):
                tz = _dt.UTC
            else:
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                tz = _dt.timezone(
                    sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                )
            base = _dt.datetime(
                int(year), int(month), int(day), int(hh), int(mm), int(ss), tzinfo=tz
            ).timestamp()
            value = base + (int(frac) / 10 ** len(frac) if frac else 0.0)
        except ValueError:
            value = None
    _rfc3339_cache.put(text, value)
    return value


def bsd_timestamp(
    month: int, day: int, hh: int, mm: int, ss: int, received: float, tz: _dt.tzinfo
) -> float | None:
    """An RFC 3164 timestamp (no year, no zone) -> epoch, in ``tz``: the latest year that does
    not put it more than a week after ``received`` (Dec 31 read on Jan 1 is last year's)."""
    year = time.gmtime(received).tm_year
    value: float | None = None
    for y in (year, year - 1, year + 1):
        try:
            t = _dt.datetime(y, month, day, hh, mm, ss, tzinfo=tz).timestamp()
        except ValueError:  # Feb 29 in a non-leap year, hour 25, ...
            continue
        if t <= received + _WEEK and (value is None or t > value):
            value = t
    return value


_ts_text_cache: dict[int, str] = {}


def format_ts(ts: float) -> str:
    """Epoch -> ``2026-11-28T08:02:41.123456Z`` (fixed width: sorts as text)."""
    sec = int(ts // 1)
    usec = round((ts - sec) * 1_000_000)
    if usec >= 1_000_000:
        sec += 1
        usec -= 1_000_000
    head = _ts_text_cache.get(sec)
    if head is None:
        if len(_ts_text_cache) > 4096:
            _ts_text_cache.clear()
        try:
            head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        except (OverflowError, OSError, ValueError):
            head = "1970-01-01T00:00:00"
        if len(head) != 19:  # years before 1000 or after 9999
            head = "1970-01-01T00:00:00"
        _ts_text_cache[sec] = head
    return f"{head}.{usec:06d}Z"


def parse_ts(text: str) -> float | None:
    """Read back a ``format_ts`` timestamp (or any RFC 3339 one)."""
    return parse_rfc3339(text)


# --------------------------------------------------------------------------------------------
# Message parsing

_PRI: Final = re.compile(rb"<(\d{1,3})>")
_5424_HEADER: Final = re.compile(rb"(\d{1,2}) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ")
_FAST_5424: Final = re.compile(
    rb"<(\d{1,3})>1 ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) "
    rb'(-|(?:\[[^\s=\]"]+(?: +[^\s=\]"]+="(?:[^"\\]|\\.)*")* *\])+)(?= |\Z)',
    re.S,
)
_5424_SHORT: Final = re.compile(rb"(\d{1,2}) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+)\Z")
# One or more SD elements; lenient about what is inside a quoted value (escapes honoured).
_SD: Final = re.compile(rb'(?:\[[^\s=\]"]+(?: +[^\s=\]"]+="(?:[^"\\]|\\.)*")* *\])+', re.S)
_SD_ELEMENT: Final = re.compile(r'\[([^\s=\]"]+)((?: +[^\s=\]"]+="(?:[^"\\]|\\.)*")*) *\]', re.S)
_SD_PARAM: Final = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"', re.S)
_SD_UNESCAPE: Final = re.compile(r'\\(["\\\]])')

# 3164: "Mmm dd hh:mm:ss" with the day space- or zero-padded; optional fraction and year, and
# Cisco IOS's "SEQ: *Mmm dd hh:mm:ss.mmm:" (sequence number, '*' or '.' = clock not synced).
_BSD_TS: Final = re.compile(
    rb"(?:\d+: )?[*.]?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ 0-3]?\d) "
    rb"(\d\d):(\d\d):(\d\d)(?:\.\d{1,6})?(?: (\d{4}))?(:?) "
)
# rsyslog's RSYSLOG_ForwardFormat puts an RFC 3339 timestamp in the 3164 layout.
_ISO_TS: Final = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) ")
# TAG (<= 48 chars here: RFC 5424's APP-NAME limit; 3164 says 32) then "[PID]" then ':'.
_TAG: Final = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\s\]]{0,128})\])?(?:(:) ?| |\Z)")
_TAG_STRICT: Final = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\s\]]{0,128})\])?:(?: |\Z)")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _nil(field: bytes) -> str | None:
    return None if field == b"-" else field.decode("utf-8", "backslashreplace")


def parse_structured_data(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """``[id k="v" ...][id2 ...]`` -> ``[("id", [("k", "v"), ...]), ...]`` (escapes removed)."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for m in _SD_ELEMENT.finditer(text):
        params = [
            (name, _SD_UNESCAPE.sub(r"\1", value)) for name, value in _SD_PARAM.findall(m.group(2))
        ]
        out.append((m.group(1), params))
    return out


def parse_message(
    data: bytes,
    *,
    received: float,
    source: str = "-",
    tz: _dt.tzinfo = _dt.UTC,
) -> SyslogRecord:
    """Parse one syslog payload; never raises (garbage becomes a ``raw`` record with a note).

    ``received`` is the receive time (epoch), used when the message carries no usable time;
    ``tz`` is the zone RFC 3164 timestamps are assumed to be in (they carry none).
    """
    try:
        return _parse_any(data, received, source, tz)
    except (ValueError, IndexError, OverflowError) as exc:  # a bug, but never lose the message
        return _raw(data, received, source, f"parser-error:{type(exc).__name__}")


def _raw(data: bytes, received: float, source: str, note: str) -> SyslogRecord:
    pri = DEFAULT_PRI
    return SyslogRecord(
        received, pri >> 3, pri & 7, None, None, None, None, None, _decode(data), "raw",
        source, note,
    )  # fmt: skip


def _parse_any(data: bytes, received: float, source: str, tz: _dt.tzinfo) -> SyslogRecord:
    # Trailers that survive framing: rsyslog's protocol-23 template ends in LF, Python's
    # handler appends NUL, Windows senders CRLF.
    data = data.rstrip(b"\n\r\x00")
    f = _FAST_5424.match(data)
    if f is not None:
        # The common case in one match: "<PRI>1 TS HOST APP PROCID MSGID SD MSG".
        pri_text, ts_b, host_b, app_b, proc_b, msgid_b, sd_b = f.groups()
        pri = int(pri_text)
        if pri <= 191 and (pri_text[0] != 0x30 or len(pri_text) == 1):
            if ts_b == b"-":
                ts = received
            else:
                cached = _TS5424.get(ts_b)
                if cached is None:
                    cached = _ts5424(ts_b)
                    if cached is None:
                        return _parse(data, received, source, tz)
                ts = cached
            msg_b = data[f.end() + 1 :]
            if msg_b[:1] == b" ":
                msg_b = msg_b[1:]
            elif msg_b.startswith(_BOM):
                msg_b = msg_b[3:]
            return SyslogRecord(
                ts, pri >> 3, pri & 7,
                None if host_b == b"-" else host_b.decode("utf-8", "backslashreplace"),
                None if app_b == b"-" else app_b.decode("utf-8", "backslashreplace"),
                None if proc_b == b"-" else proc_b.decode("utf-8", "backslashreplace"),
                None if msgid_b == b"-" else msgid_b.decode("utf-8", "backslashreplace"),
                None if sd_b == b"-" else sd_b.decode("utf-8", "backslashreplace"),
                msg_b.decode("utf-8", "backslashreplace"), "5424", source,
            )  # fmt: skip
    return _parse(data, received, source, tz)


_TS5424: dict[bytes, float] = {}
_TS5424_BASE: dict[bytes, float | None] = {}


def _ts5424(ts_b: bytes) -> float | None:
    """RFC 5424 TIMESTAMP bytes -> epoch, memoised per whole second and zone."""
    if len(ts_b) > 20 and ts_b[19] == 0x2E:  # "."
        if ts_b[-1] == 0x5A:  # "Z"
            frac, zone = ts_b[20:-1], ts_b[-1:]
        else:
            frac, zone = ts_b[20:-6], ts_b[-6:]
        if not (0 < len(frac) <= 9 and frac.isdigit()):
            return None
        key = ts_b[:19] + zone
        base = _TS5424_BASE.get(key, -1.0)
        if base == -1.0:
            base = parse_rfc3339(key.decode("ascii", "backslashreplace"))
            if len(_TS5424_BASE) > 4096:
                _TS5424_BASE.clear()
            _TS5424_BASE[key] = base
        if base is None:
            return None
        value = base + int(frac) / 10 ** len(frac)
    else:
        whole = parse_rfc3339(ts_b.decode("ascii", "backslashreplace"))
        if whole is None:
            return None
        value = whole
    if len(_TS5424) > 4096:
        _TS5424.clear()
    _TS5424[ts_b] = value
    return value


def _parse(data: bytes, received: float, source: str, tz: _dt.tzinfo) -> SyslogRecord:
    m = _PRI.match(data)
    if m is None:
        return _raw(data, received, source, "no-pri" if data else "empty")
    pri_text = m.group(1)
    pri = int(pri_text)
    if pri > 191:
        return _raw(data, received, source, "bad-pri")
    note: str | None = None
    if len(pri_text) > 1 and pri_text[0] == 0x30:  # "<013>": invalid in 5424, common anyway
        note = "pri-leading-zero"
    pos = m.end()
    rest = data[pos:]
    if rest[:1].isdigit():
        h = _5424_HEADER.match(rest) or _5424_SHORT.match(rest)
        ts_b = h.group(2) if h is not None else b""
        if h is not None and (ts_b == b"-" or (ts_b[:4].isdigit() and ts_b[4:5] == b"-")):
            if h.group(1) != b"1":
                return _raw(data, received, source, "unsupported-version")
            return _parse_5424(data, pri, rest, h, received, source, note)
    return _parse_3164(pri, rest, received, source, tz, note)


def _parse_5424(
    data: bytes,
    pri: int,
    rest: bytes,
    h: re.Match[bytes],
    received: float,
    source: str,
    note: str | None,
) -> SyslogRecord:
    _, ts_b, host_b, app_b, proc_b, msgid_b = h.groups()
    ts = received
    original_ts: str | None = None
    if ts_b != b"-":
        ts_text = ts_b.decode("ascii", "backslashreplace")
        parsed = parse_rfc3339(ts_text)
        if parsed is None:
            note = "bad-timestamp"
            original_ts = ts_text
        else:
            ts = parsed
    pos = h.end()
    sd: str | None = None
    msg_b = b""
    if pos >= len(rest):
        pass  # "<13>1 - - - - -": header only, SD missing (tolerated)
    elif rest[pos : pos + 1] == b"-":
        pos += 1
        if pos < len(rest) and rest[pos] != 0x20:
            note = "bad-sd"
            msg_b = rest[pos - 1 :]
        else:
            msg_b = rest[pos + 1 :]
    elif rest[pos : pos + 1] == b"[":
        s = _SD.match(rest, pos)
        if s is None or (s.end() < len(rest) and rest[s.end()] != 0x20):
            note = "bad-sd"
            msg_b = rest[pos:]
        else:
            sd = s.group().decode("utf-8", "backslashreplace")
            msg_b = rest[s.end() + 1 :]
    else:
        note = "bad-sd"
        msg_b = rest[pos:]
    if msg_b.startswith(_BOM):
        msg_b = msg_b[3:]
    elif msg_b[:1] == b" ":  # rsyslog's protocol-23 template: "- - -  text" (two spaces)
        msg_b = msg_b[1:]
    return SyslogRecord(
        ts, pri >> 3, pri & 7, _nil(host_b), _nil(app_b), _nil(proc_b), _nil(msgid_b), sd,
        msg_b.decode("utf-8", "backslashreplace"), "5424", source, note, original_ts,
    )  # fmt: skip


_BSD_TEXT: dict[tuple[bytes, _dt.tzinfo], float] = {}
_WEEK: Final = 7 * 86400


def _parse_3164(
    pri: int, rest: bytes, received: float, source: str, tz: _dt.tzinfo, note: str | None
) -> SyslogRecord:
    ts = received
    hostname: str | None = None
    original_ts: str | None = None
    have_ts = False
    cisco = False
    b = _BSD_TS.match(rest)
    if b is not None:
        mon, day, hh, mm, ss, year, colon = b.groups()
        have_ts = True
        cisco = colon == b":"
        stamp = b.group()
        cached = _BSD_TEXT.get((stamp, tz))
        # Still the latest year not more than a week after `received`? (Exact: the same date a
        # year later is at least 365 days on.)
        if cached is not None and (
            year is not None or cached <= received + _WEEK < cached + 365 * 86400
        ):
            value: float | None = cached
        elif year is not None:
            try:
                value = _dt.datetime(
                    int(year), _MONTHS[mon.decode()], int(day), int(hh), int(mm), int(ss),
                    tzinfo=tz,
                ).timestamp()  # fmt: skip
            except ValueError:
                value = None
        else:
            value = bsd_timestamp(
                _MONTHS[mon.decode()], int(day), int(hh), int(mm), int(ss), received, tz
            )
        if value is not None and value is not cached:
            if len(_BSD_TEXT) > 4096:
                _BSD_TEXT.clear()
            _BSD_TEXT[(stamp, tz)] = value
        if value is None:
            note = "bad-timestamp"
            original_ts = b.group().strip().decode("ascii", "backslashreplace")
        else:
            ts = value
        rest = rest[b.end() :]
    else:
        i = _ISO_TS.match(rest)
        if i is not None:
            have_ts = True
            text = i.group(1).decode("ascii")
            value = parse_rfc3339(text)
            if value is None:
                note = "bad-timestamp"
                original_ts = text
            else:
                ts = value
            rest = rest[i.end() :]
    text = rest.decode("utf-8", "backslashreplace")
    if text.startswith("\ufeff"):
        text = text[1:]
    app: str | None = None
    procid: str | None = None
    if have_ts and not cisco:
        # "host tag[pid]: msg" or the local-socket form without a host, "tag[pid]: msg".
        # A first word that already looks like a tag (ends in ':' or has '[pid]') is the tag;
        # otherwise it is the host (rsyslog #1789 / #5098: never invent one when there is none).
        t = _TAG.match(text)
        if t is not None and (t.group(3) or t.group(2) is not None):
            app, procid = t.group(1), t.group(2)
            text = text[t.end() :]
        else:
            sp = text.find(" ")
            word = text if sp < 0 else text[:sp]
            if word:
                hostname = word
                text = "" if sp < 0 else text[sp + 1 :]
                t = _TAG.match(text)
                if t is not None:  # rsyslog forwards 5424 sources as "host app text" (no ':')
                    app, procid = t.group(1), t.group(2)
                    text = text[t.end() :]
    elif not cisco:
        # No timestamp (Python's SysLogHandler: "<PRI>ident[pid]: text" or just "<PRI>text"):
        # only an explicit "tag:" counts as a tag, and there is no hostname.
        t = _TAG_STRICT.match(text)
        if t is not None:
            app, procid = t.group(1), t.group(2)
            text = text[t.end() :]
    return SyslogRecord(
        ts, pri >> 3, pri & 7, hostname, app, procid or None, None, None, text, "3164", source,
        note, original_ts,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# TCP framing (RFC 6587)

_DIGITS: Final = frozenset(b"0123456789")
_SKIP: Final = frozenset(b"\n\r\x00 \t")


class TcpFramer:
    """Split one connection's byte stream into syslog payloads (RFC 6587).

    ``feed(data)`` returns the complete payloads found, each as ``(payload, truncated)``;
    ``close()`` returns what a clean end of stream leaves (a last frame without a trailer).
    The framing is chosen by the connection's first frame: a digit starts octet counting,
    anything else non-transparent framing whose trailer (LF or NUL) is the first one seen.
    Frames that clearly use the other framing are still accepted.
    """

    OCTET: Final = "octet"
    LF: Final = "lf"
    NUL: Final = "nul"

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 480:  # RFC 5426: every receiver must accept 480 octets
            raise ValueError("max_message_bytes must be at least 480")
        self.max_message_bytes = max_message_bytes
        self.mode: str | None = None
        self._buf = b""
        self._discard = 0  # octet-counted bytes still to skip after a truncated frame
        self._discard_line = False  # skip up to the next trailer after a truncated frame
        # True when every untruncated frame the last feed() returned is printable US-ASCII
        # (lets the server skip fast_line's per-message check).
        self.printable = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        buf = self._buf + data if self._buf else data
        out: list[tuple[bytes, bool]] = []
        mode = self.mode
        if (mode == self.LF or mode == self.NUL) and not self._discard_line and buf:
            # Fast path: split the whole chunk at once.
            term = b"\n" if mode == self.LF else b"\x00"
            parts = buf.split(term)
            tail = parts.pop()
            limit = self.max_message_bytes
            # One check for the whole chunk instead of one per message (see fast_line).
            self.printable = (
                mode == self.LF
                and buf.isascii()
                and len(buf.translate(None, _CTL_EXCEPT_LF)) == len(buf)
            )
            if mode == self.LF and b"\r" in buf:
                parts = [p[:-1] if p[-1:] == b"\r" else p for p in parts]
            out = [(p, False) if len(p) <= limit else (p[:limit], True) for p in parts if p]
            self._buf = b""
            if tail:
                out.extend(self._general(tail))
            return out
        self._buf = b""
        self.printable = False
        if mode == self.OCTET and not self._discard and buf:
            # Fast path: well-formed "LEN SP MSG" frames in a tight loop; anything else
            # (a partial or oversized frame, a stray trailer) from there on by _general.
            self.printable = buf.isascii() and len(buf.translate(None, _CTL_DELETE)) == len(buf)
            limit = self.max_message_bytes
            find = buf.find
            n = len(buf)
            pos = 0
            while pos < n and 0x31 <= buf[pos] <= 0x39:
                sp = find(b" ", pos, pos + 11)
                if sp < 0:
                    break
                digits = buf[pos:sp]
                if not digits.isdigit():
                    break
                start = sp + 1
                end = start + int(digits)
                if end > n or end - start > limit:
                    break
                out.append((buf[start:end], False))
                pos = end
            if pos < n:
                out.extend(self._general(buf[pos:]))
            return out
        out.extend(self._general(buf))
        return out

    def _general(self, buf: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        limit = self.max_message_bytes
        n = len(buf)
        pos = 0
        while pos < n:
            if self._discard:
                k = min(self._discard, n - pos)
                self._discard -= k
                pos += k
                continue
            if self._discard_line:
                end = self._find_trailer(buf, pos)
                if end < 0:
                    pos = n
                    break
                self._discard_line = False
                pos = end + 1
                continue
            c = buf[pos]
            if c in _SKIP and (self.mode is None or self.mode == self.OCTET):
                # stray trailers/blanks between frames (LF/NUL modes: empty frames, below)
                if self.mode is None and c in (0x0A, 0x00):
                    self.mode = self.LF if c == 0x0A else self.NUL
                pos += 1
                continue
            if c in _DIGITS and c != 0x30 and self.mode in (None, self.OCTET):
                sp = buf.find(b" ", pos, pos + 11)
                if sp < 0:
                    if n - pos <= 10 and buf[pos:].isdigit():
                        break  # header not complete yet
                elif buf[pos:sp].isdigit():
                    length = int(buf[pos:sp])
                    start = sp + 1
                    if length <= limit:
                        if n - start < length:
                            break
                        self.mode = self.OCTET
                        out.append((buf[start : start + length], False))
                        pos = start + length
                        continue
                    if n - start < limit:
                        break
                    self.mode = self.OCTET
                    out.append((buf[start : start + limit], True))
                    self._discard = length - limit
                    pos = start + limit
                    continue
            # Non-transparent frame.
            end = self._find_trailer(buf, pos)
            if end < 0:
                if n - pos > limit:
                    out.append((buf[pos : pos + limit], True))
                    self._discard_line = True
                    pos += limit
                    continue
                break
            frame = buf[pos:end]
            if buf[end] == 0x0A and frame[-1:] == b"\r":
                frame = frame[:-1]
            if len(frame) > limit:
                out.append((frame[:limit], True))
            elif frame:
                out.append((frame, False))
            pos = end + 1
        self._buf = buf[pos:]
        return out

    def _find_trailer(self, buf: bytes, pos: int) -> int:
        mode = self.mode
        if mode == self.NUL:
            return buf.find(b"\x00", pos)
        if mode == self.LF:
            return buf.find(b"\n", pos)
        lf = buf.find(b"\n", pos)
        nul = buf.find(b"\x00", pos, lf if lf >= 0 else len(buf))
        if nul >= 0:
            if mode is None:
                self.mode = self.NUL
            return nul
        if lf >= 0 and mode is None:
            self.mode = self.LF
        return lf

    def close(self) -> list[tuple[bytes, bool]]:
        """End of stream: a last non-transparent frame without trailer is still a message
        (Python's handler with ``append_nul=False``); a short octet-counted one is marked
        truncated."""
        buf, self._buf = self._buf, b""
        if not buf or self._discard or self._discard_line:
            return []
        if buf[0] in _DIGITS and self.mode in (None, self.OCTET):
            sp = buf.find(b" ", 0, 11)
            if sp > 0 and buf[:sp].isdigit():
                return [(buf[sp + 1 :][: self.max_message_bytes], True)]
        frame = buf.rstrip(b"\r\n\x00")
        if not frame:
            return []
        limit = self.max_message_bytes
        return [(frame[:limit], len(frame) > limit)]


# --------------------------------------------------------------------------------------------
# Encoders


def _escape_ctl(text: str) -> str:
    return _CTL.sub(lambda m: f"#{ord(m.group()):03o}", text)


_CTL: Final = re.compile(r"[\x00-\x1f\x7f]")
_FIELD_BAD: Final = re.compile(r"[\x00-\x20\x7f]")


def _field(value: str | None) -> str:
    if not value:
        return "-"
    if _FIELD_BAD.search(value):
        return _FIELD_BAD.sub("_", value)
    return value


def format_line(record: SyslogRecord) -> str:
    """The on-disk line (with a trailing LF); see the module docstring for the layout."""
    host = record.hostname or record.source or "-"
    app = record.app_name or "-"
    procid = record.procid or "-"
    msgid = record.msgid or "-"
    if _FIELD_BAD.search(f"{host}{app}{procid}{msgid}"):
        host, app, procid, msgid = _field(host), _field(app), _field(procid), _field(msgid)
    meta = _META.get((record.fmt, record.source))
    if meta is None:
        meta = f"fmt={record.fmt},src={_field(record.source)}"
        if len(_META) > 4096:
            _META.clear()
        _META[(record.fmt, record.source)] = meta
    if record.note:
        meta += f",note={_field(record.note)}"
    if record.original_ts:
        meta += f",ots={_field(record.original_ts).replace(',', '_')}"
    msg = record.msg
    if _CTL.search(msg):
        msg = _escape_ctl(msg)
    sd = record.structured_data
    if sd is None:
        sd = "-"
    elif _CTL.search(sd):
        sd = _escape_ctl(sd)
    return (
        f"{format_ts(record.ts)} {host} {app} {procid} {msgid} "
        f"{_FACSEV[record.facility * 8 + record.severity]} {meta} {sd} {msg}\n"
    )


_META: dict[tuple[str, str], str] = {}
_FACSEV: Final = tuple(f"{fac}.{sev}" for fac in FACILITIES for sev in SEVERITIES)


# The fused fast path: the most common RFC 5424 shape (canonical UTC timestamp, printable
# ASCII throughout) goes from payload to on-disk line as bytes, without a SyslogRecord.
_FAST_LINE: Final = re.compile(
    rb"<(0|[1-9]\d{0,2})>1 ([1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{6}Z) "
    rb"([!-~]+) ([!-~]+) ([!-~]+) ([!-~]+) "
    rb'(-|(?:\[[^\s=\]"]+(?: +[^\s=\]"]+="(?:[^"\\]|\\.)*")* *\])+)(?: |\Z)'
)
_FACSEV_B: Final = tuple(x.encode() for x in _FACSEV)
_VALID_SECOND: dict[bytes, bool] = {}


def fast_line(
    data: bytes, source: bytes, meta: bytes, printable: bool = False
) -> tuple[bytes, bytes, bytes, int] | None:
    """``format_line(parse_message(data))`` as bytes for the common RFC 5424 shape, plus
    (host, app, pri) for the file path; None when the general parser must look at it.

    ``source`` is the sender's address and ``meta`` is ``b"fmt=5424,src=" + source``;
    ``printable`` promises that ``data`` is printable US-ASCII (``TcpFramer.printable``).
    """
    if data[-1:] in _TRAILERS:
        data = data.rstrip(b"\n\r\x00")
    # Quickest: no structured data and a canonical timestamp -- a split instead of a regex.
    p = data.split(b" ", 7)
    if len(p) >= 7 and p[6] == b"-":
        pri = _PRI_V1.get(p[0])
        ts = p[1]
        if (
            pri is not None
            and len(ts) == 27
            and ts[26] == 0x5A  # "Z"
            and ts[19] == 0x2E  # "."
            and p[2] and p[3] and p[4] and p[5]
            and (printable or _printable(data))
        ):  # fmt: skip
            second = ts[:19]
            valid = _VALID_SECOND.get(second)
            if valid is None:
                valid = _valid_second(second)
            if valid and ts[20:26].isdigit():
                msg = p[7] if len(p) == 8 else b""
                if msg[:1] == b" ":
                    msg = msg[1:]
                mid = _MID.get((pri, meta))
                if mid is None:
                    mid = _mid(pri, meta)
                host = p[2]
                if host == b"-":
                    host = source
                line = b" ".join((ts, host, p[3], p[4], p[5], mid, msg))
                return line + b"\n", host, p[3], pri
    m = _FAST_LINE.match(data)
    if m is None:
        return None
    pri = int(m.group(1))
    if pri > 191:
        return None
    second = m.group(2)
    valid = _VALID_SECOND.get(second)
    if valid is None:
        valid = _valid_second(second)
    if not valid:
        return None
    # The line is the input with "<PRI>1 " dropped and "FACILITY.SEVERITY META " inserted
    # before the SD: slice and join instead of rebuilding it field by field.
    sd_start = m.start(8)
    end = m.end()
    if end == len(data):
        rest = data[sd_start:] if data[-1] == 0x20 else data[sd_start:] + b" "  # no MSG
    elif data[end] == 0x20:  # rsyslog's "- - -  text": one extra space goes
        rest = data[sd_start:end] + data[end + 1 :]
    else:
        rest = data[sd_start:]
    if not printable and (  # printable ASCII only: nothing to escape, nothing to decode
        not rest.isascii() or len(rest.translate(None, _CTL_DELETE)) != len(rest)
    ):
        return None
    mid = _MID.get((pri, meta))
    if mid is None:
        mid = _mid(pri, meta)
    mid = mid[:-1]  # without the "-" of an empty SD
    host = m.group(4)
    if host == b"-":
        host = source
        head = b"%b%b %b %b" % (second, m.group(3), source, data[m.start(5) : sd_start])
    else:
        head = data[m.start(2) : sd_start]
    return b"".join((head, mid, rest, b"\n")), host, m.group(5), pri


_MID: dict[tuple[int, bytes], bytes] = {}
_PRI_V1: Final = {b"<%d>1" % pri: pri for pri in range(192)}


def _mid(pri: int, meta: bytes) -> bytes:
    """``b"FACILITY.SEVERITY META -"``: what the line has between MSGID and MSG (SD nil)."""
    if len(_MID) > 4096:
        _MID.clear()
    mid = _MID[(pri, meta)] = b"%b %b -" % (_FACSEV_B[pri], meta)
    return mid


def _printable(data: bytes) -> bool:
    return data.isascii() and len(data.translate(None, _CTL_DELETE)) == len(data)


def _valid_second(second: bytes) -> bool:
    """Is ``YYYY-MM-DDTHH:MM:SS`` a real UTC second (memoised)?"""
    text = second.decode("ascii", "replace")
    valid = text[:1] != "0" and text[10:11] == "T" and parse_rfc3339(text + "Z") is not None
    if len(_VALID_SECOND) > 4096:
        _VALID_SECOND.clear()
    _VALID_SECOND[second] = valid
    return valid
_TRAILERS: Final = (b"\n", b"\r", b"\x00")
_CTL_DELETE: Final = bytes(range(32)) + b"\x7f"
_CTL_EXCEPT_LF: Final = _CTL_DELETE.replace(b"\n", b"")


@dataclass(slots=True)
class StoredLine:
    """A line read back from a collector file (``parse_line``)."""

    ts_text: str
    host: str
    app: str
    procid: str
    msgid: str
    facility: str
    severity: str
    meta: str
    rest: str  # "SD MSG"
    line: str

    @property
    def severity_code(self) -> int:
        return SEVERITY_BY_NAME.get(self.severity, 7)

    def message(self) -> str:
        rest = self.rest
        if rest.startswith("- "):
            return rest[2:]
        if rest.startswith("["):
            m = _SD_ELEMENT_TEXT.match(rest)
            if m is not None:
                return rest[m.end() :].lstrip(" ")
        return rest


_SD_ELEMENT_TEXT: Final = re.compile(r'(?:\[[^\s=\]"]+(?: +[^\s=\]"]+="(?:[^"\\]|\\.)*")* *\])+')


def parse_line(line: str) -> StoredLine | None:
    """Read an on-disk line back; None for a line that is not in the format."""
    line = line.rstrip("\n")
    parts = line.split(" ", 7)
    if len(parts) != 8 or len(parts[0]) != 27 or parts[0][26] != "Z":
        return None
    ts, host, app, procid, msgid, facsev, meta, rest = parts
    fac, dot, sev = facsev.partition(".")
    if not dot:
        return None
    return StoredLine(ts, host, app, procid, msgid, fac, sev, meta, rest, line)


_NOT_PRINTUSASCII: Final = re.compile(r"[^\x21-\x7e]")


def _header(value: str | None, limit: int) -> str:
    if not value:
        return "-"
    return _NOT_PRINTUSASCII.sub("_", value)[:limit]


def encode_rfc5424(record: SyslogRecord) -> bytes:
    """RFC 5424 bytes for a record (forwarding): original fields kept, the timestamp
    normalised to UTC, HOSTNAME falling back to the sender's address as RFC 5424 6.2.4 asks."""
    head = (
        f"<{record.pri}>1 {format_ts(record.ts)} {_header(record.hostname or record.source, 255)} "
        f"{_header(record.app_name, 48)} {_header(record.procid, 128)} "
        f"{_header(record.msgid, 32)} {record.structured_data or '-'}"
    )
    msg = record.msg
    return (f"{head} {msg}" if msg else head).encode("utf-8", "backslashreplace")


def frame_octet_counted(payload: bytes) -> bytes:
    return b"%d %b" % (len(payload), payload)
