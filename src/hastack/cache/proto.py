"""Sans-I/O codec for the memcached text and meta protocols (as of memcached 1.6.18).

Server role: ``ServerCodec.receive_data(bytes)`` then ``next_event()`` until it returns None.
Events are small command objects (``Get``, ``Store``, ``Meta``, ...). Malformed input raises
``hastack.errors.ProtocolError`` whose ``reply`` is exactly what memcached 1.6.18 answers (empty
when memcached stays silent, e.g. under ``noreply``) and whose ``fatal`` says to close.

Client role: ``encode_*`` helpers build requests and ``ReplyParser`` turns reply bytes into
``Value`` / ``Line`` / ``MetaReply`` events. The cluster client, the tests and the benchmark
load generator share it.

Parsing follows memcached's own tokeniser (``proto_text.c``): tokens are split on single spaces
only, a line ends at ``\\n`` with one optional ``\\r`` before it, a NUL byte ends the line early
(``strlen``), at most 24 tokens are split, and numbers go through C ``strtol``/``strtoull``
semantics (leading whitespace, sign, trailing whitespace accepted; wrap-around as memcached).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from hastack.errors import ProtocolError

# -- limits (memcached 1.6.18 defaults, memcached.h / proto_text.c) -----------------------------
KEY_MAX_LENGTH = 250  # KEY_MAX_LENGTH in memcached.h
MAX_TOKENS = 24  # MAX_TOKENS in proto_text.c: the 24th token holds the rest of the line
LINE_MAX_BYTES = 2048  # try_read_command_ascii: no "\n" in 2048 bytes -> not a get -> close
OPAQUE_MAX_BYTES = 32  # MFLAG_MAX_OPAQUE_LENGTH
ITEM_SIZE_MAX = 1024 * 1024  # -I default: 1 MiB
MULTIGET_LINE_MAX_BYTES = 1024 * 1024  # ours: memcached grows its buffer without a bound

# -- reply strings (exact, memcached 1.6.18) -----------------------------------------------------
ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
OUT_OF_MEMORY = b"SERVER_ERROR out of memory storing object\r\n"
SHUTDOWN_DISABLED = b"ERROR: shutdown not enabled\r\n"
STATS_DETAIL_USAGE = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
TOO_MANY_CONNECTIONS = b"ERROR Too many open connections\r\n"
OPAQUE_TOO_LONG = b"CLIENT_ERROR opaque token too long\r\n"

_SPACE = b" \t\n\v\f\r"  # C isspace()
_NUM_RE = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_U64 = (1 << 64) - 1


def _c_number(tok: bytes) -> tuple[bool, int, int] | None:
    """Parse like strtol/strtoull: (negative, magnitude, end) or None if no digits / bad tail."""
    m = _NUM_RE.match(tok)
    if m is None:
        return None
    end = m.end()
    if end != len(tok) and tok[end] not in _SPACE and tok[end] != 0:
        return None
    return m.group(1) == b"-", int(m.group(2)), end


def strtoull(tok: bytes) -> int | None:
    """memcached ``safe_strtoull``: u64, '-' only allowed if the result is "positive"."""
    if len(tok) < 10 and tok.isdigit():
        return int(tok)  # the common case: plain digits, no sign, no overflow
    r = _c_number(tok)
    if r is None:
        return None
    neg, mag, _ = r
    if mag > _U64:
        return None  # ERANGE
    value = (-mag) & _U64 if neg else mag
    if neg and value >= 1 << 63:
        return None
    return value


def strtoul32(tok: bytes) -> int | None:
    """memcached ``safe_strtoul`` into a uint32_t (client flags): parsed as u64, truncated."""
    if len(tok) < 10 and tok.isdigit():
        return int(tok)  # the common case: plain digits, no sign, no overflow
    value = strtoull(tok)
    return None if value is None else value & 0xFFFFFFFF


def strtol32(tok: bytes) -> int | None:
    """memcached ``safe_strtol``: parsed as a 64-bit long, stored into an int32_t (truncates)."""
    if len(tok) < 10 and tok.isdigit():
        return int(tok)  # the common case: plain digits, no sign, no overflow
    r = _c_number(tok)
    if r is None:
        return None
    neg, mag, _ = r
    value = -mag if neg else mag
    if not -(1 << 63) <= value < 1 << 63:
        return None  # ERANGE
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# -- events (server role) ------------------------------------------------------------------------
SET, ADD, REPLACE, APPEND, PREPEND, CAS = range(6)
STORE_COMMANDS = {b"set": SET, b"add": ADD, b"replace": REPLACE, b"append": APPEND,
                  b"prepend": PREPEND, b"cas": CAS}  # fmt: skip


class Event:
    __slots__ = ()


class Get(Event):
    """get/gets/gat/gats. ``exptime`` is None for get/gets.

    ``error``: a key was over 250 bytes. memcached has already looked up (and counted) the
    keys before it when it notices, then answers only the error; ``keys`` are those keys."""

    __slots__ = ("error", "exptime", "keys", "with_cas")

    def __init__(
        self, keys: list[bytes], with_cas: bool, exptime: int | None = None, error: bytes = b""
    ) -> None:
        self.keys = keys
        self.with_cas = with_cas
        self.exptime = exptime
        self.error = error


class Store(Event):
    """set/add/replace/append/prepend/cas. ``data`` is None when the value was too large to read
    (the codec swallowed it); the engine answers SERVER_ERROR object too large for cache."""

    __slots__ = ("cas_unique", "data", "exptime", "flags", "key", "mode", "noreply", "size")

    def __init__(
        self,
        mode: int,
        key: bytes,
        flags: int,
        exptime: int,
        data: bytes | None,
        size: int,
        cas_unique: int = 0,
        noreply: bool = False,
    ) -> None:
        self.mode = mode
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.data = data
        self.size = size
        self.cas_unique = cas_unique
        self.noreply = noreply


class Delete(Event):
    __slots__ = ("key", "noreply")

    def __init__(self, key: bytes, noreply: bool) -> None:
        self.key = key
        self.noreply = noreply


class Arith(Event):
    __slots__ = ("delta", "incr", "key", "noreply")

    def __init__(self, incr: bool, key: bytes, delta: int, noreply: bool) -> None:
        self.incr = incr
        self.key = key
        self.delta = delta
        self.noreply = noreply


class Touch(Event):
    __slots__ = ("exptime", "key", "noreply")

    def __init__(self, key: bytes, exptime: int, noreply: bool) -> None:
        self.key = key
        self.exptime = exptime
        self.noreply = noreply


class FlushAll(Event):
    """``error`` is the reply for a bad delay: memcached counts cmd_flush before parsing."""

    __slots__ = ("delay", "error", "noreply")

    def __init__(self, delay: int, noreply: bool, error: bytes = b"") -> None:
        self.delay = delay
        self.noreply = noreply
        self.error = error


class BadChunk(Event):
    """A data block not followed by CRLF. memcached still counts it in ``cmd_set``."""

    __slots__ = ("meta", "noreply")

    def __init__(self, noreply: bool, meta: bool) -> None:
        self.noreply = noreply
        self.meta = meta


class Simple(Event):
    """A command the engine answers without looking at items: ``name`` in
    version | verbosity | quit | shutdown | cache_memlimit."""

    __slots__ = ("arg", "name", "noreply")

    def __init__(self, name: str, noreply: bool = False, arg: int = 0) -> None:
        self.name = name
        self.noreply = noreply
        self.arg = arg


class Dump(Event):
    """``lru_crawler metadump all|hash|<class>[,<class>...]``: ``classes`` None = every item.
    ``error``: a bad class id (memcached checks it after refusing a pipelined metadump)."""

    __slots__ = ("classes", "error")

    def __init__(self, classes: frozenset[int] | None, error: bytes = b"") -> None:
        self.classes = classes
        self.error = error


class Stats(Event):
    __slots__ = ("args",)

    def __init__(self, args: list[bytes]) -> None:
        self.args = args


@dataclass(slots=True)
class MetaFlags:
    """Flags of one meta command after memcached's ``_meta_flag_preparse``."""

    base64: bool = False
    value: bool = False
    quiet: bool = False
    no_update: bool = False
    vivify_ttl: int | None = None  # N
    ttl: int | None = None  # T
    recache_ttl: int | None = None  # R
    client_flags: int = 0  # F
    cas: int | None = None  # C
    mode: int = 0  # M<char>
    initial: int = 0  # J
    delta: int = 1  # D
    invalidate: bool = False  # I
    opaque_too_long: bool = False  # an O token over 32 bytes (mg/ma report it late)
    tokens: list[bytes] = field(default_factory=list)  # flag tokens in request order


class Meta(Event):
    """mg / ms / md / ma / me / mn. ``cmd`` is the second letter (b"g", b"s", ...)."""

    __slots__ = ("cmd", "data", "flags", "key", "size")

    def __init__(self, cmd: bytes, key: bytes, flags: MetaFlags, data: bytes | None = None,
                 size: int = 0) -> None:  # fmt: skip
        self.cmd = cmd
        self.key = key  # decoded when the b flag was given
        self.flags = flags
        self.data = data
        self.size = size  # ms: announced value length (data is None when too large)


def _error(reply: bytes, message: str = "") -> ProtocolError:
    return ProtocolError(message or reply.decode("latin-1").strip(), reply)


def _meta_error(reply: bytes) -> ProtocolError:
    return ProtocolError(reply.decode("latin-1").strip(), reply)


def b64encode_key(key: bytes) -> bytes:
    return binascii.b2a_base64(key, newline=False)


def _b64decode(token: bytes) -> bytes | None:
    try:
        out = binascii.a2b_base64(token, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return out or None


def parse_meta_flags(
    tokens: list[bytes], start: int
) -> tuple[MetaFlags, bytes, bytes | None]:
    """``_meta_flag_preparse``: returns the flags, the (base64-decoded) key and the error reply
    (or None). ``tokens[1]`` is the key.

    Duplicate and unknown flags stop parsing at once (memcached returns -1 immediately);
    value errors are remembered and parsing continues (memcached sets ``has_error``)."""
    f = MetaFlags()
    f.tokens = tokens[start:]
    seen: set[int] = set()
    err: bytes | None = None
    key = tokens[1]
    for tok in f.tokens:
        o = tok[0]
        if o >= 127 or o in seen:
            return f, key, b"CLIENT_ERROR duplicate flag\r\n"
        seen.add(o)
        if o == 98:  # b
            f.base64 = True
            decoded = _b64decode(key)
            if decoded is None:
                err = b"CLIENT_ERROR error decoding key\r\n"
            else:
                key = decoded
        elif o in (78, 84, 82):  # N T R
            v = strtol32(tok[1:])
            if v is None:
                err = b"CLIENT_ERROR bad token in command line format\r\n"
            elif o == 78:
                f.vivify_ttl = v
            elif o == 84:
                f.ttl = v
            else:
                f.recache_ttl = v
        elif o in b"OPLkstcflhvuq":
            if o == 118:
                f.value = True
            elif o == 117:
                f.no_update = True
            elif o == 113:
                f.quiet = True
        elif o == 70:  # F
            v = strtoul32(tok[1:])
            if v is None:
                err = err or BAD_FORMAT
            else:
                f.client_flags = v
        elif o == 67:  # C
            v = strtoull(tok[1:])
            if v is None:
                err = b"CLIENT_ERROR bad token in command line format\r\n"
            else:
                f.cas = v
        elif o == 77:  # M
            if len(tok) != 2:
                err = b"CLIENT_ERROR incorrect length for M token\r\n"
            else:
                f.mode = tok[1]
        elif o == 74:  # J
            v = strtoull(tok[1:])
            if v is None:
                err = b"CLIENT_ERROR invalid numeric initial value\r\n"
            else:
                f.initial = v
        elif o == 68:  # D
            v = strtoull(tok[1:])
            if v is None:
                err = b"CLIENT_ERROR invalid numeric delta value\r\n"
            else:
                f.delta = v
        elif o == 73:  # I
            f.invalidate = True
        else:
            return f, key, b"CLIENT_ERROR invalid flag\r\n"
    return f, key, err


class ServerCodec:
    """Parses client requests. Holds at most one partial line or one data block.

    Limits (memcached 1.6.18 defaults):
    ``max_key_bytes`` KEY_MAX_LENGTH 250; ``max_line_bytes`` 2048 (an unterminated non-get line
    longer than this closes the connection); ``max_multiget_line_bytes`` bounds a get line
    (memcached: unbounded); ``max_value_bytes`` values larger than this are swallowed without
    buffering (memcached's -I item_size_max, 1 MiB).
    """

    def __init__(
        self,
        *,
        max_key_bytes: int = KEY_MAX_LENGTH,
        max_line_bytes: int = LINE_MAX_BYTES,
        max_multiget_line_bytes: int = MULTIGET_LINE_MAX_BYTES,
        max_value_bytes: int = ITEM_SIZE_MAX,
    ) -> None:
        self.max_key_bytes = max_key_bytes
        self.max_line_bytes = max_line_bytes
        self.max_multiget_line_bytes = max_multiget_line_bytes
        self.max_value_bytes = max_value_bytes
        self._buf = b""
        self._pos = 0
        self._swallow = 0  # bytes of a rejected data block still to discard
        self._pending: Event | None = None  # Store/Meta waiting for its data block
        self._pending_size = 0
        self._pending_noreply = False
        self._pending_meta = False
        # Holding: while no progress is possible (a data block still incomplete, a line without
        # its newline) received pieces are only collected, and joined once, when enough has
        # arrived. A value sent one byte at a time then costs O(n), not O(n^2) copying.
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._need = 0  # > 0: bytes needed in the buffer; -1: waiting for a newline
        self._long_line_ok = False  # the pending long line was checked: it is a multiget

    def receive_data(self, data: bytes) -> None:
        if self._need:
            self._parts.append(data)
            self._parts_len += len(data)
            total = len(self._buf) - self._pos + self._parts_len
            if self._need > 0:
                if total < self._need:
                    return
            elif b"\n" not in data and (
                total <= self.max_line_bytes
                or (self._long_line_ok and total <= self.max_multiget_line_bytes)
            ):
                return
            data = b"".join(self._parts)
            self._parts = []
            self._parts_len = 0
            self._need = 0
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        elif self._buf:
            self._buf += data
        else:
            self._buf = data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos + self._parts_len

    def next_event(self) -> Event | None:
        """Next complete command, or None when more bytes are needed."""
        while True:
            if self._swallow:
                avail = len(self._buf) - self._pos
                n = min(avail, self._swallow)
                self._pos += n
                self._swallow -= n
                if self._swallow:
                    return None
            if self._pending is not None:
                return self._read_block()
            buf = self._buf
            pos = self._pos
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if len(buf) > pos:  # a partial line: hold further pieces until a newline
                    if len(buf) - pos > self.max_line_bytes:
                        self._check_long_line()
                    self._need = -1
                return None
            self._long_line_ok = False
            self._pos = nl + 1
            end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            line = buf[pos:end]
            # fast path: "get <one key>", the bulk of a cache's traffic
            if (
                line[:4] == b"get "
                and 4 < len(line) <= 4 + self.max_key_bytes
                and line.find(b" ", 4) < 0
                and b"\0" not in line
            ):
                return Get([line[4:]], False)
            ev = self._parse_line(line)
            if ev is not None:
                return ev

    def _check_long_line(self) -> None:
        pending = len(self._buf) - self._pos
        if pending <= self.max_line_bytes:
            return
        head = self._buf[self._pos : self._pos + 110]
        stripped = head.lstrip(b" ")
        if len(head) - len(stripped) > 100 or not (
            stripped.startswith(b"get ") or stripped.startswith(b"gets ")
        ):
            raise ProtocolError("request line too long", b"", fatal=True)
        if pending > self.max_multiget_line_bytes:
            raise ProtocolError(
                "multiget line too long", b"SERVER_ERROR out of memory reading request\r\n",
                fatal=True,
            )
        self._long_line_ok = True

    def _read_block(self) -> Event | None:
        size = self._pending_size
        if len(self._buf) - self._pos < size + 2:
            self._need = size + 2
            return None
        ev = self._pending
        self._pending = None
        start = self._pos
        self._pos = start + size + 2
        buf = self._buf
        if buf[start + size : start + size + 2] != b"\r\n":
            return BadChunk(self._pending_noreply and not self._pending_meta, self._pending_meta)
        assert ev is not None
        if isinstance(ev, Store):
            ev.data = buf[start : start + size]
        else:
            assert isinstance(ev, Meta)
            ev.data = buf[start : start + size]
        return ev

    def _expect_block(self, ev: Event, size: int, noreply: bool, meta: bool) -> Event | None:
        """Either read ``size`` bytes + CRLF next, or swallow them when too large."""
        if size > self.max_value_bytes:
            self._swallow = size + 2
            return ev  # data stays None: the engine replies "object too large"
        self._pending = ev
        self._pending_size = size
        self._pending_noreply = noreply
        self._pending_meta = meta
        return self._read_block()

    # -- line dispatch --------------------------------------------------------------------------
    def _parse_line(self, line: bytes) -> Event | None:
        if 0 in line:
            line = line[: line.index(0)]
        tokens = line.split(b" ")
        if b"" in tokens:
            tokens = [t for t in tokens if t]
        if len(tokens) >= MAX_TOKENS:
            # memcached splits 23 tokens; the 24th is the rest of the line. Only get-style
            # commands use more than 8 tokens, and they read the rest of the line as keys.
            cmd = tokens[0] if tokens else b""
            if cmd not in (b"get", b"gets", b"bget", b"gat", b"gats", b"stats"):
                if len(cmd) == 2 and cmd[0] == 109:  # meta: more than 22 flags
                    raise _meta_error(b"CLIENT_ERROR options flags are too long\r\n")
                raise _error(ERROR)
        if not tokens or len(tokens[0]) < 2:
            raise _error(ERROR)
        cmd = tokens[0]
        n = len(tokens)
        if cmd == b"get" or cmd == b"gets" or cmd == b"bget":  # bget: memcached's old alias
            if n < 2:
                raise _error(ERROR)
            keys = tokens[1:]
            for i, k in enumerate(keys):
                if len(k) > self.max_key_bytes:
                    return Get(keys[:i], cmd == b"gets", None, BAD_FORMAT)
            return Get(keys, cmd == b"gets")
        mode = STORE_COMMANDS.get(cmd)
        if mode is not None:
            return self._parse_store(mode, tokens)
        if cmd[0] == 109 and len(cmd) == 2:  # "m?"
            return self._parse_meta(tokens)
        if cmd == b"delete":
            return self._parse_delete(tokens)
        if cmd == b"incr" or cmd == b"decr":
            if n not in (3, 4):
                raise _error(ERROR)
            noreply = tokens[-1] == b"noreply"
            if len(tokens[1]) > self.max_key_bytes:
                raise _noreply_error(BAD_FORMAT, noreply)
            delta = strtoull(tokens[2])
            if delta is None:
                raise _noreply_error(BAD_DELTA, noreply)
            return Arith(cmd == b"incr", tokens[1], delta, noreply)
        if cmd == b"touch":
            if n not in (3, 4):
                raise _error(ERROR)
            noreply = tokens[-1] == b"noreply"
            if len(tokens[1]) > self.max_key_bytes:
                raise _noreply_error(BAD_FORMAT, noreply)
            exptime = strtol32(tokens[2])
            if exptime is None:
                raise _noreply_error(BAD_EXPTIME, noreply)
            return Touch(tokens[1], exptime, noreply)
        if cmd == b"gat" or cmd == b"gats":
            if n < 3:
                raise _error(ERROR)
            exptime = strtol32(tokens[1])
            if exptime is None:
                raise _error(BAD_EXPTIME)
            keys = tokens[2:]
            for i, k in enumerate(keys):
                if len(k) > self.max_key_bytes:
                    return Get(keys[:i], cmd == b"gats", exptime, BAD_FORMAT)
            return Get(keys, cmd == b"gats", exptime)
        if cmd == b"stats":
            return Stats(tokens[1:])
        if cmd == b"flush_all":
            if n > 3:
                raise _error(ERROR)
            noreply = tokens[-1] == b"noreply"
            delay = 0
            if n != (2 if noreply else 1):
                d = strtol32(tokens[1])
                if d is None:
                    return FlushAll(0, noreply, BAD_EXPTIME)
                delay = d
            return FlushAll(delay, noreply)
        if cmd == b"version":
            return Simple("version")
        if cmd == b"quit":
            return Simple("quit")
        if cmd == b"verbosity":
            if n not in (2, 3):
                raise _error(ERROR)
            noreply = tokens[-1] == b"noreply"
            level = strtoul32(tokens[1])
            if level is None:
                raise _noreply_error(BAD_FORMAT, noreply)
            return Simple("verbosity", noreply, level)
        if cmd == b"cache_memlimit":
            if n not in (2, 3):
                raise _error(ERROR)
            noreply = tokens[-1] == b"noreply"
            mb = strtoul32(tokens[1])
            if mb is None:
                raise _noreply_error(ERROR, noreply)
            return Simple("cache_memlimit", noreply, mb)
        if cmd == b"shutdown":
            raise _error(SHUTDOWN_DISABLED)
        if cmd == b"lru_crawler":
            if n == 3 and tokens[1] == b"metadump":
                if tokens[2] in (b"all", b"hash"):
                    return Dump(None)
                classes = set()
                for part in tokens[2].split(b","):
                    c = strtoul32(part)
                    # memcached: POWER_SMALLEST (1) .. MAX_NUMBER_OF_SLAB_CLASSES - 1 (63)
                    if c is None or not 1 <= c <= 63:
                        return Dump(None, b"BADCLASS invalid class id\r\n")
                    classes.add(c)
                return Dump(frozenset(classes))
            raise _error(ERROR)  # crawl/sleep/tocrawl/enable/disable: not offered
        if n >= 2 and tokens[-1].startswith(b"HTTP/"):
            raise ProtocolError("HTTP request on the memcached port", b"", fatal=True)
        raise _error(ERROR)

    def _parse_store(self, mode: int, tokens: list[bytes]) -> Event | None:
        n = len(tokens)
        want = (6, 7) if mode == CAS else (5, 6)
        if n not in want:
            raise _error(ERROR)
        noreply = tokens[-1] == b"noreply"
        key = tokens[1]
        if len(key) > self.max_key_bytes:
            raise _noreply_error(BAD_FORMAT, noreply)
        t2, t3, t4 = tokens[2], tokens[3], tokens[4]
        flags: int | None
        exptime: int | None
        size: int | None
        if (
            len(t2) < 10 and len(t3) < 10 and len(t4) < 10
            and t2.isdigit() and t3.isdigit() and t4.isdigit()
        ):  # fmt: skip
            flags, exptime, size = int(t2), int(t3), int(t4)  # the common case
        else:
            flags = strtoul32(t2)
            exptime = strtol32(t3)
            size = strtol32(t4)
        if flags is None or exptime is None or size is None:
            raise _noreply_error(BAD_FORMAT, noreply)
        cas_unique = 0
        if mode == CAS:
            c = strtoull(tokens[5])
            if c is None:
                raise _noreply_error(BAD_FORMAT, noreply)
            cas_unique = c
        if size < 0 or size > 0x7FFFFFFF - 2:
            raise _noreply_error(BAD_FORMAT, noreply)
        ev = Store(mode, key, flags, exptime, None, size, cas_unique, noreply)
        return self._expect_block(ev, size, noreply, meta=False)

    def _parse_delete(self, tokens: list[bytes]) -> Event:
        n = len(tokens)
        if n < 2 or n > 4:
            raise _error(ERROR)
        noreply = False
        if n > 2:
            hold_is_zero = tokens[2] == b"0"
            noreply = tokens[-1] == b"noreply"
            valid = (n == 3 and (hold_is_zero or noreply)) or (n == 4 and hold_is_zero and noreply)
            if not valid:
                raise _noreply_error(DELETE_USAGE, noreply)
        if len(tokens[1]) > self.max_key_bytes:
            raise _noreply_error(BAD_FORMAT, noreply)
        return Delete(tokens[1], noreply)

    def _parse_meta(self, tokens: list[bytes]) -> Event | None:
        c = tokens[0][1:2]
        n = len(tokens)
        if c == b"n":
            return Meta(b"n", b"", MetaFlags())
        if c not in (b"g", b"s", b"d", b"a", b"e"):
            raise _error(ERROR)
        if c == b"e":
            if n < 2 or len(tokens[1]) > self.max_key_bytes:
                raise _meta_error(BAD_FORMAT)
            key = tokens[1]
            if n > 2 and tokens[2] == b"b":
                k = _b64decode(key)
                if k is None:
                    raise _meta_error(BAD_FORMAT)
                key = k
            return Meta(b"e", key, MetaFlags(base64=n > 2 and tokens[2] == b"b"))
        if n < 2:
            raise _error(ERROR)
        raw_key = tokens[1]
        if len(raw_key) > self.max_key_bytes:
            raise _meta_error(BAD_FORMAT)
        if c == b"s":
            return self._parse_ms(tokens)
        flags, key, err = parse_meta_flags(tokens, 2)
        if err is not None:
            if c != b"g":  # md/ma replace the preparse message with their own
                err = b"CLIENT_ERROR invalid or duplicate flag\r\n"
            raise _meta_error(err)
        for tok in flags.tokens:
            if tok[0] == 79 and len(tok) > OPAQUE_MAX_BYTES:
                if c == b"d":
                    raise _meta_error(OPAQUE_TOO_LONG)
                # mg/ma: memcached notices while writing the reply, after counting the lookup
                flags.opaque_too_long = True
        if c == b"a" and flags.mode not in (0, 73, 105, 43, 68, 100, 45):
            raise _meta_error(b"CLIENT_ERROR invalid mode for ma M token\r\n")
        return Meta(c, key, flags)

    def _parse_ms(self, tokens: list[bytes]) -> Event | None:
        if len(tokens) < 3:
            raise _meta_error(BAD_FORMAT)
        size = strtol32(tokens[2])
        if size is None or size < 0 or size > 0x7FFFFFFF - 2:
            raise _meta_error(BAD_FORMAT)
        flags, key, err = parse_meta_flags(tokens, 3)
        if err is None:
            for tok in flags.tokens:
                if tok[0] == 79 and len(tok) > OPAQUE_MAX_BYTES:
                    err = OPAQUE_TOO_LONG
                    break
        if err is None and flags.mode not in (0, 69, 65, 80, 82, 83):
            err = b"CLIENT_ERROR invalid mode for ms M token\r\n"
        if err is not None:
            # memcached swallows the announced data block after an ms error
            self._swallow = size + 2
            raise _meta_error(err)
        ev = Meta(b"s", key, flags, None, size)
        return self._expect_block(ev, size, flags.quiet, meta=True)


def _noreply_error(reply: bytes, noreply: bool) -> ProtocolError:
    """memcached's out_string() drops every reply, errors included, under noreply."""
    return ProtocolError(reply.decode("latin-1").strip(), b"" if noreply else reply)


# -- client role -----------------------------------------------------------------------------------
def encode_get(keys: list[bytes] | tuple[bytes, ...], cas: bool = False) -> bytes:
    return (b"gets " if cas else b"get ") + b" ".join(keys) + b"\r\n"


def encode_store(
    cmd: bytes,
    key: bytes,
    value: bytes,
    flags: int = 0,
    exptime: int = 0,
    cas_unique: int | None = None,
    noreply: bool = False,
) -> bytes:
    line = b"%s %s %d %d %d" % (cmd, key, flags, exptime, len(value))
    if cas_unique is not None:
        line += b" %d" % cas_unique
    if noreply:
        line += b" noreply"
    return line + b"\r\n" + value + b"\r\n"


def encode_line(*parts: bytes) -> bytes:
    return b" ".join(parts) + b"\r\n"


class Value:
    """One ``VALUE key flags bytes [cas]`` block of a get reply."""

    __slots__ = ("cas", "data", "flags", "key")

    def __init__(self, key: bytes, flags: int, data: bytes, cas: int | None) -> None:
        self.key = key
        self.flags = flags
        self.data = data
        self.cas = cas

    def __repr__(self) -> str:
        return f"Value({self.key!r}, {self.flags}, {self.data!r}, {self.cas})"


class Line:
    """Any single-line reply: END, STORED, NOT_FOUND, a number, ERROR, CLIENT_ERROR ..."""

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        self.line = line

    def __repr__(self) -> str:
        return f"Line({self.line!r})"


class MetaReply:
    """A meta reply (HD/VA/EN/NF/NS/EX/MN/ME) with its flag tokens and, for VA, the value."""

    __slots__ = ("code", "data", "flags")

    def __init__(self, code: bytes, flags: list[bytes], data: bytes | None) -> None:
        self.code = code
        self.flags = flags
        self.data = data

    def __repr__(self) -> str:
        return f"MetaReply({self.code!r}, {self.flags!r}, {self.data!r})"


ReplyEvent = Value | Line | MetaReply

_META_CODES = {b"HD", b"EN", b"NF", b"NS", b"EX", b"MN", b"ME"}


class ReplyParser:
    """Client side: bytes from a memcached server -> reply events, in order.

    ``max_value_bytes`` bounds a VALUE/VA block (a server never sends more than its -I).
    """

    def __init__(self, max_value_bytes: int = 1024 * 1024 * 1024, max_line_bytes: int = 65536):
        self.max_value_bytes = max_value_bytes
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data

    def next_event(self) -> ReplyEvent | None:
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            if len(buf) - pos > self.max_line_bytes:
                raise ProtocolError("reply line too long", fatal=True)
            return None
        line = buf[pos:nl]
        if line.startswith(b"VALUE "):
            parts = line.split(b" ")
            if len(parts) not in (4, 5):
                raise ProtocolError(f"bad VALUE line {line!r}", fatal=True)
            try:
                flags = int(parts[2])
                size = int(parts[3])
                cas = int(parts[4]) if len(parts) == 5 else None
            except ValueError:
                raise ProtocolError(f"bad VALUE line {line!r}", fatal=True) from None
            if size < 0 or size > self.max_value_bytes:
                raise ProtocolError(f"bad VALUE size {size}", fatal=True)
            start = nl + 2
            if len(buf) < start + size + 2:
                return None
            if buf[start + size : start + size + 2] != b"\r\n":
                raise ProtocolError("VALUE block not terminated", fatal=True)
            self._pos = start + size + 2
            return Value(parts[1], flags, buf[start : start + size], cas)
        head = line[:2]
        if head == b"VA" and (len(line) == 2 or line[2] == 32):
            parts = line.split(b" ")
            try:
                size = int(parts[1])
            except (IndexError, ValueError):
                raise ProtocolError(f"bad VA line {line!r}", fatal=True) from None
            if size < 0 or size > self.max_value_bytes:
                raise ProtocolError(f"bad VA size {size}", fatal=True)
            start = nl + 2
            if len(buf) < start + size + 2:
                return None
            self._pos = start + size + 2
            return MetaReply(b"VA", parts[2:], buf[start : start + size])
        self._pos = nl + 2
        if head in _META_CODES and (len(line) == 2 or line[2] == 32):
            return MetaReply(head, line.split(b" ")[1:], None)
        return Line(line)
