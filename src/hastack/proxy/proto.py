"""Sans-I/O HTTP/1.1 codec (the h11 school): bytes in -> events, events -> bytes.

One class, :class:`HTTPConnection`, serves both roles: ``role="server"`` parses requests (the
proxy's client side), ``role="client"`` parses responses (backends, storage nodes, health checks).
It does no I/O and reads no clock, so the proxy, the tests and the benchmarks share it.

Events: :class:`Request` / :class:`Response` (a message head), :class:`Data` (body bytes, already
de-chunked), :class:`EndOfMessage`, :class:`ConnectionClosed`; ``NEED_DATA`` when more bytes are
needed. After ``EndOfMessage`` the parser is ready for the next message on the same connection
(keep-alive, pipelining): the caller simply keeps calling :meth:`HTTPConnection.next_event` when it
wants the next request, so pipelined requests wait in the buffer until their turn.

Malformed or over-limit input raises :class:`hastack.errors.ProtocolError` whose ``reply`` is the
complete HTTP error response to send (400, 413, 414, 431, 501, 505) for the server role, and
empty for the client role (a broken backend answer becomes a 502 in the proxy). Nothing else
escapes :meth:`next_event`.

Hot-path notes: heads are parsed in one pass once the blank line is present (no per-byte work),
header names are validated with ``bytes.translate`` (C speed), and body bytes are sliced out of one
``bytearray`` without intermediate copies.
"""

from __future__ import annotations

import re
from collections import deque
from http import HTTPStatus
from typing import Literal

from hastack.errors import ProtocolError

__all__ = [
    "NEED_DATA",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "HTTPConnection",
    "Request",
    "Response",
    "encode_chunk",
    "encode_request_head",
    "encode_response_head",
    "error_response",
    "reason_phrase",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")

_REASONS: dict[int, bytes] = {int(s): s.phrase.encode("ascii") for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def error_response(status: int, message: str | None = None, *, close: bool = True) -> bytes:
    """A complete, small plain-text error response (what ProtocolError.reply carries)."""
    reason = reason_phrase(status)
    body = (message if message is not None else reason.decode("ascii")).encode() + b"\n"
    head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (
        status,
        reason,
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


# RFC 9110 token characters (header names, methods).
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Request-target: visible ASCII (no spaces, no controls); high bytes are rejected too.
_TARGET = bytes(range(0x21, 0x7F))
_HEX = b"0123456789abcdefABCDEF"
_CTL_EXCEPT_TAB = bytes([*range(0, 9), *range(10, 32), 127])
_DIGITS = b"0123456789"
# One header line of a well-formed CRLF head (the fast path; see _parse_head).
_HEADER_LINE = re.compile(rb"(?m)^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r\n")
# The framing headers, found in the lowercased head.
_SPECIAL = re.compile(
    rb"\n(content-length|transfer-encoding|connection|expect|host):[ \t]*([^\r\n]*)"
)


class Request:
    """A request head. ``headers`` keep the names as received; ``target`` is raw bytes."""

    __slots__ = (
        "chunked",
        "connection",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        version: bytes = b"1.1",
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.version = version
        # Filled by the parser (or by _frame() when built by hand for send()).
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.host: bytes | None = None  # first Host header (lowercased), set by the parser
        self.connection: bytes | None = None  # Connection header values (lowercased), joined

    def header(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (lowercase), or None."""
        return first_header(self.headers, name)

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.headers!r}, {self.version!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Request)
            and (self.method, self.target, self.headers, self.version)
            == (other.method, other.target, other.headers, other.version)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable event, equality only for tests


class Response:
    """A response head (status < 200 is an informational response such as 100 Continue)."""

    __slots__ = (
        "_headers",
        "_raw",
        "chunked",
        "content_length",
        "keep_alive",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]] | None,
        reason: bytes = b"",
        version: bytes = b"1.1",
        raw: bytes = b"",
    ) -> None:
        self.status = status
        self._headers = headers
        self._raw = raw  # header block, split into fields only when .headers is first read
        self.reason = reason
        self.version = version
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        h = self._headers
        if h is None:
            h = self._headers = _lenient_fields(self._raw)
        return h

    @headers.setter
    def headers(self, value: list[tuple[bytes, bytes]]) -> None:
        self._headers = value

    def header(self, name: bytes) -> bytes | None:
        return first_header(self.headers, name)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.reason!r}, {self.version!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Response)
            and (self.status, self.headers, self.reason, self.version)
            == (other.status, other.headers, other.reason, other.version)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable event, equality only for tests


def first_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """First value of header ``name`` (given lowercase); the length check skips most names
    without lowercasing them."""
    for k, v in headers:
        if len(k) == len(name) and k.lower() == name:
            return v
    return None


def _lenient_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields of a response head; malformed lines are dropped (as browsers do)."""
    fields = _HEADER_LINE.findall(raw)
    if len(fields) == raw.count(b"\n") and b"\x00" not in raw and b" \r\n" not in raw:
        return fields
    out = []
    for line in raw.split(b"\n"):
        if line[-1:] == b"\r":
            line = line[:-1]
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        if colon and name and not name.translate(None, _TOKEN) and not (
            b"\x00" in value or b"\r" in value
        ):
            out.append((name, value))
    return out


class Data:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and self.data == other.data

    __hash__ = None  # type: ignore[assignment]  # equality only for tests


class EndOfMessage:
    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.trailers = trailers or []

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage) and self.trailers == other.trailers

    __hash__ = None  # type: ignore[assignment]  # equality only for tests


class ConnectionClosed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ConnectionClosed()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectionClosed)

    __hash__ = None  # type: ignore[assignment]  # equality only for tests


Event = Request | Response | Data | EndOfMessage | ConnectionClosed

# Parser states
_HEAD = 0
_LENGTH = 1  # Content-Length body
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILERS = 5
_UNTIL_CLOSE = 6  # response without length: body ends at EOF
_CLOSED = 7
_ERROR = 8


def _connection_tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


class HTTPConnection:
    """HTTP/1.1 parser (and message framer) for one connection.

    ``role="server"`` parses requests, ``role="client"`` parses responses; for the client role
    call :meth:`expect_response` with the request method before each response (HEAD answers have
    no body).
    """

    def __init__(
        self,
        role: Literal["server", "client"],
        *,
        # Apache LimitRequestLine 8190 (nginx large_client_header_buffers 8k): longer -> 414.
        max_request_line_bytes: int = 8190,
        # nginx large_client_header_buffers 4 x 8k = 32 KiB for all header lines -> 431.
        max_header_bytes: int = 32768,
        # Apache LimitRequestFields 100 -> 431.
        max_headers: int = 100,
        # Perlbal max_chunked_request_size 200 MB (nginx client_max_body_size is 1m) -> 413.
        max_body_bytes: int = 200 * 1024 * 1024,
        # nginx rejects chunk-size lines with long extensions; 1 KiB is generous.
        max_chunk_line_bytes: int = 1024,
    ) -> None:
        self.role = role
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self.max_chunk_line_bytes = max_chunk_line_bytes
        self._server = role == "server"
        self._buf = bytearray()
        self.buf = self._buf  # read-only view for flow control: len(conn.buf) is what is unparsed
        self._scan = 0  # no head terminator before this offset
        self._state = _HEAD
        self._remaining = 0
        self._body_total = 0
        self._eof = False
        self._methods: deque[bytes] = deque()  # client role: methods awaiting responses
        self._out_chunked = False
        self._out_remaining: int | None = None
        self._out_no_body = False
        self._pending_eom = False
        self._direct: bytes | None = None  # see receive_data
        # Keep-alive verdict of the last complete message head.
        self.keep_alive = True

    # -- receiving --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed (EOF)."""
        if data:
            if self._direct is not None:
                self._buf += self._direct
                self._direct = None
            if self._state == _LENGTH and not self._buf:
                # Body bytes arriving on an empty buffer are kept as they are and handed out
                # as Data without being copied into (and out of) the bytearray.
                self._direct = data
            else:
                self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not turned into events yet (pipelined requests, early body)."""
        d = self._direct
        return len(self._buf) + (len(d) if d is not None else 0)

    @property
    def in_body(self) -> bool:
        return self._state not in (_HEAD, _CLOSED, _ERROR)

    def expect_response(self, method: bytes) -> None:
        """Client role: a request with ``method`` was sent; its response comes next."""
        self._methods.append(method)

    def _fail(self, status: int, message: str) -> ProtocolError:
        self._state = _ERROR
        reply = error_response(status, message) if self._server else b""
        return ProtocolError(message, reply, fatal=True)

    def next_event(self) -> Event | _Sentinel:
        st = self._state
        if st == _HEAD:
            if self._pending_eom:
                self._pending_eom = False
                return EndOfMessage()
            return self._next_head()
        if st == _LENGTH:
            d = self._direct
            if d is not None:
                self._direct = None
                n = self._remaining
                if len(d) > n:
                    self._buf += d[n:]  # the next message (pipelined) starts in this chunk
                    d = d[:n]
                n -= len(d)
                self._remaining = n
                if n == 0:
                    self._state = _HEAD
                    self._pending_eom = True
                return Data(d)
            buf = self._buf
            if not buf:
                if self._eof:
                    raise self._fail(400, "connection closed inside a message body")
                return NEED_DATA
            n = self._remaining
            if len(buf) <= n:
                data = bytes(buf)
                buf.clear()
            else:
                data = bytes(buf[:n])
                del buf[:n]
            n -= len(data)
            self._remaining = n
            if n == 0:
                # The caller gets EndOfMessage on the next call.
                self._state = _HEAD
                self._pending_eom = True
            return Data(data)
        if st == _UNTIL_CLOSE:
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                self._body_total += len(data)
                if self._body_total > self.max_body_bytes:
                    raise self._fail(502, "response body too large")
                return Data(data)
            if self._eof:
                self._state = _CLOSED
                self.keep_alive = False
                return EndOfMessage()
            return NEED_DATA
        if st == _CLOSED:
            return ConnectionClosed()
        if st == _ERROR:
            raise ProtocolError("connection in error state", b"", fatal=True)
        return self._next_chunked()

    def _next_head(self) -> Event | _Sentinel:
        if self._pending_eom:
            self._pending_eom = False
            return EndOfMessage()
        buf = self._buf
        if not buf:
            if self._eof:
                self._state = _CLOSED
                return ConnectionClosed()
            return NEED_DATA
        c = buf[0]
        if c == 13 or c == 10:
            # Skip empty lines before a request line (RFC 9112 2.2, robustness).
            while buf[:2] == b"\r\n":
                del buf[:2]
            while buf[:1] == b"\n":
                del buf[:1]
            if not buf:
                return self._next_head()
        scan = self._scan
        end = buf.find(b"\r\n\r\n", scan)
        if end >= 0:
            head_len = end + 4
            if head_len == len(buf):
                head = bytes(buf)
                buf.clear()
            else:
                head = bytes(buf[:head_len])
                del buf[:head_len]
            self._scan = 0
            # Fast path for the common, well-formed CRLF head: C-level passes only. Anything
            # unusual (bare LF, stray CR, NUL, trailing blanks, a line that does not match)
            # takes the careful path, which also produces the precise error.
            first_end = head.find(b"\r\n")
            if not self._server:
                # Responses: only the framing headers now; the rest when asked (Response.headers).
                first = head[:first_end]
                if b"\r" not in first and b"\n" not in first:
                    special = _SPECIAL.findall(head.lower(), first_end)
                    return self._finish_head(first, None, special, head[first_end + 2 : -2])
                return self._parse_head_slow(head)
            # (A bare LF or stray CR anywhere makes the line count differ from nl - 2.)
            nl = head.count(b"\n")
            if (
                b"\x00" not in head
                and b" \r\n" not in head
                and b"\t\r\n" not in head
                and first_end <= self.max_request_line_bytes
                and head_len - first_end <= self.max_header_bytes + 4
                and nl - 2 <= self.max_headers
            ):
                headers = _HEADER_LINE.findall(head, first_end + 2)
                if len(headers) == nl - 2:
                    first = head[:first_end]
                    if b"\r" not in first:
                        special = _SPECIAL.findall(head.lower(), first_end)
                        return self._finish_head(first, headers, special)
            return self._parse_head_slow(head)
        else:
            end2 = buf.find(b"\n\n", scan)
            end3 = buf.find(b"\n\r\n", scan)
            if end2 < 0 and end3 < 0:
                return self._head_incomplete()
            head_len = end2 + 2 if end3 < 0 or 0 <= end2 < end3 else end3 + 3
        head = bytes(buf[:head_len])
        del buf[:head_len]
        self._scan = 0
        return self._parse_head_slow(head)

    def _head_incomplete(self) -> _Sentinel:
        buf = self._buf
        n = len(buf)
        line_end = buf.find(b"\n", 0, self.max_request_line_bytes + 2)
        if line_end < 0 and n > self.max_request_line_bytes + 1:
            raise self._fail(414 if self._server else 502, "request line too long")
        if n > self.max_request_line_bytes + self.max_header_bytes + 4:
            raise self._fail(431, "request header fields too large")
        if self._eof:
            raise self._fail(400, "connection closed inside a message head")
        self._scan = max(0, n - 3)
        return NEED_DATA

    def _finish_head(
        self,
        first: bytes,
        headers: list[tuple[bytes, bytes]] | None,
        special: list[tuple[bytes, bytes]],
        raw: bytes = b"",
    ) -> Event:
        """``special``: (lowercase name, value) of the framing headers, in order."""
        content_length: int | None = None
        chunked = False
        te_seen = False
        conn: bytes | None = None
        expect = False
        host: bytes | None = None
        for lname, value in special:
            if lname == b"host":
                if host is None:
                    host = value
            elif lname == b"content-length":
                value = value.strip(b" \t")
                if not value or value.translate(None, _DIGITS) or len(value) > 18:
                    raise self._fail(400, "invalid Content-Length")
                cl = int(value)
                if content_length is not None and cl != content_length:
                    raise self._fail(400, "conflicting Content-Length")
                content_length = cl
            elif lname == b"transfer-encoding":
                te_seen = True
                codings = [c.strip().lower() for c in value.split(b",")]
                chunked = codings[-1] == b"chunked"
                if not chunked or any(c not in (b"chunked", b"identity") for c in codings):
                    raise self._fail(501, "unsupported Transfer-Encoding")
            elif lname == b"connection":
                conn = value if conn is None else conn + b"," + value
            elif lname == b"expect":
                expect = value.strip().lower() == b"100-continue"
        if te_seen and content_length is not None:
            # Request smuggling guard (RFC 9112 6.1): refuse rather than guess.
            raise self._fail(400, "both Transfer-Encoding and Content-Length")
        if self._server:
            assert headers is not None
            req = self._finish_request(first, headers, content_length, chunked, conn, expect)
            # Lowercased (it comes from the lowercased head): host names are case-insensitive.
            req.host = host.strip(b" \t") if host is not None else None
            req.connection = conn
            return req
        return self._finish_response(first, headers, content_length, chunked, conn, raw)

    def _parse_head_slow(self, head: bytes) -> Event:
        # A bare-LF blank line may end the head before the CRLF CRLF that was found.
        ends = [i for i in (head.find(b"\n\n"), head.find(b"\n\r\n")) if i >= 0]
        real = min(ends) + (2 if min(ends) == head.find(b"\n\n") else 3)
        if real < len(head):
            self._buf[0:0] = head[real:]
            head = head[:real]
        lines = head.split(b"\n")
        # lines ends with ["", ""] (or [.., "\r", ""]); drop the blank-line terminator
        del lines[-2:]
        first = lines[0]
        if first[-1:] == b"\r":
            first = first[:-1]
        if len(first) > self.max_request_line_bytes:
            raise self._fail(414 if self._server else 502, "request line too long")
        if len(head) - len(lines[0]) > self.max_header_bytes + 4:
            raise self._fail(431, "request header fields too large")
        if len(lines) - 1 > self.max_headers:
            raise self._fail(431, "too many header fields")
        headers: list[tuple[bytes, bytes]] = []
        for i in range(1, len(lines)):
            line = lines[i]
            if line[-1:] == b"\r":
                line = line[:-1]
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, _TOKEN):
                if line[:1] in (b" ", b"\t"):
                    raise self._fail(400, "obsolete line folding")
                raise self._fail(400, "malformed header line")
            value = value.strip(b" \t")
            if b"\x00" in value or b"\r" in value:
                raise self._fail(400, "invalid character in header value")
            headers.append((name, value))
        if b"\x00" in first or b"\r" in first:
            raise self._fail(400, "invalid character in start line")
        special = [
            (k.lower(), v)
            for k, v in headers
            if k.lower()
            in (b"content-length", b"transfer-encoding", b"connection", b"expect", b"host")
        ]
        return self._finish_head(first, headers, special)

    def _keep_alive(self, version: bytes, conn: bytes | None) -> bool:
        if conn is None:
            return version == b"1.1"
        tokens = _connection_tokens(conn)
        if b"close" in tokens:
            return False
        return version == b"1.1" or b"keep-alive" in tokens

    def _finish_request(
        self,
        first: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int | None,
        chunked: bool,
        conn: bytes | None,
        expect: bool,
    ) -> Request:
        parts = first.split(b" ")
        if len(parts) != 3:
            raise self._fail(400, "malformed request line")
        method, target, proto = parts
        if not method or method.translate(None, _TOKEN):
            raise self._fail(400, "malformed method")
        if not target or target.translate(None, _TARGET):
            raise self._fail(400, "malformed request target")
        if proto == b"HTTP/1.1":
            version = b"1.1"
        elif proto == b"HTTP/1.0":
            version = b"1.0"
        elif (
            len(proto) == 8
            and proto[:5] == b"HTTP/"
            and proto[5:6].isdigit()
            and proto[6:7] == b"."
            and proto[7:8].isdigit()
        ):
            raise self._fail(505, "HTTP version not supported")
        else:
            raise self._fail(400, "malformed HTTP version")
        req = Request(method, target, headers, version)
        req.keep_alive = self.keep_alive = (
            version == b"1.1" if conn is None else self._keep_alive(version, conn)
        )
        req.chunked = chunked
        req.content_length = content_length
        req.expect_continue = expect and version == b"1.1"
        if chunked:
            self._body_total = 0
            self._state = _CHUNK_SIZE
        elif content_length:
            if content_length > self.max_body_bytes:
                raise self._fail(413, "request body too large")
            self._remaining = content_length
            self._state = _LENGTH
        else:
            self._pending_eom = True
        return req

    def _finish_response(
        self,
        first: bytes,
        headers: list[tuple[bytes, bytes]] | None,
        content_length: int | None,
        chunked: bool,
        conn: bytes | None,
        raw: bytes = b"",
    ) -> Response:
        proto, _, rest = first.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if proto == b"HTTP/1.1":
            version = b"1.1"
        elif proto == b"HTTP/1.0":
            version = b"1.0"
        else:
            raise self._fail(502, "malformed status line")
        if len(code) != 3 or code.translate(None, _DIGITS):
            raise self._fail(502, "malformed status code")
        status = int(code)
        if status < 100:
            raise self._fail(502, "malformed status code")
        resp = Response(status, headers, reason, version, raw)
        resp.keep_alive = version == b"1.1" if conn is None else self._keep_alive(version, conn)
        resp.chunked = chunked
        resp.content_length = content_length
        if status < 200:
            # Informational: no body, the real response follows.
            return resp
        self.keep_alive = resp.keep_alive
        method = self._methods.popleft() if self._methods else b"GET"
        if method == b"HEAD" or status == 204 or status == 304:
            self._pending_eom = True
        elif chunked:
            self._body_total = 0
            self._state = _CHUNK_SIZE
        elif content_length is not None:
            if content_length > self.max_body_bytes:
                raise self._fail(502, "response body too large")
            if content_length:
                self._remaining = content_length
                self._state = _LENGTH
            else:
                self._pending_eom = True
        else:
            self._body_total = 0
            self._state = _UNTIL_CLOSE
            self.keep_alive = resp.keep_alive = False
        return resp

    def _next_chunked(self) -> Event | _Sentinel:
        buf = self._buf
        while True:
            st = self._state
            if st == _CHUNK_SIZE:
                idx = buf.find(b"\n", 0, self.max_chunk_line_bytes + 1)
                if idx < 0:
                    if len(buf) > self.max_chunk_line_bytes:
                        raise self._fail(400, "chunk size line too long")
                    if self._eof:
                        raise self._fail(400, "connection closed inside a chunked body")
                    return NEED_DATA
                line = bytes(buf[:idx])
                del buf[: idx + 1]
                if line[-1:] == b"\r":
                    line = line[:-1]
                if line.translate(None, _CTL_EXCEPT_TAB) != line:
                    raise self._fail(400, "control character in chunk size line")
                size_s = line.split(b";", 1)[0].strip(b" \t")
                if not size_s or size_s.translate(None, _HEX) or len(size_s) > 15:
                    raise self._fail(400, "invalid chunk size")
                size = int(size_s, 16)
                if size == 0:
                    self._state = _TRAILERS
                    continue
                self._body_total += size
                if self._body_total > self.max_body_bytes:
                    raise self._fail(413 if self._server else 502, "body too large")
                self._remaining = size
                self._state = _CHUNK_DATA
            elif st == _CHUNK_DATA:
                if not buf:
                    if self._eof:
                        raise self._fail(400, "connection closed inside a chunked body")
                    return NEED_DATA
                n = self._remaining
                if len(buf) <= n:
                    data = bytes(buf)
                    buf.clear()
                else:
                    data = bytes(buf[:n])
                    del buf[:n]
                n -= len(data)
                self._remaining = n
                if n == 0:
                    self._state = _CHUNK_CRLF
                return Data(data)
            elif st == _CHUNK_CRLF:
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif len(buf) >= 2 or (buf and buf[:1] != b"\r"):
                    raise self._fail(400, "missing CRLF after chunk data")
                else:
                    if self._eof:
                        raise self._fail(400, "connection closed inside a chunked body")
                    return NEED_DATA
                self._state = _CHUNK_SIZE
            else:  # _TRAILERS
                return self._next_trailers()

    def _next_trailers(self) -> Event | _Sentinel:
        buf = self._buf
        if buf[:2] == b"\r\n" or buf[:1] == b"\n":
            del buf[: 2 if buf[:1] == b"\r" else 1]
            self._state = _HEAD
            return EndOfMessage()
        end = buf.find(b"\n\r\n")
        end2 = buf.find(b"\n\n")
        if end < 0 or (0 <= end2 < end):
            if end2 < 0:
                if len(buf) > self.max_header_bytes:
                    raise self._fail(431, "trailer fields too large")
                if self._eof:
                    raise self._fail(400, "connection closed inside trailers")
                return NEED_DATA
            tlen = end2 + 2
        else:
            tlen = end + 3
        if tlen > self.max_header_bytes:
            raise self._fail(431, "trailer fields too large")
        block = bytes(buf[:tlen])
        del buf[:tlen]
        trailers: list[tuple[bytes, bytes]] = []
        for line in block.split(b"\n"):
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, _TOKEN):
                raise self._fail(400, "malformed trailer line")
            value = value.strip(b" \t")
            if b"\x00" in value or b"\r" in value:
                raise self._fail(400, "invalid character in trailer value")
            trailers.append((name, value))
        if len(trailers) > self.max_headers:
            raise self._fail(431, "too many trailer fields")
        self._state = _HEAD
        return EndOfMessage(trailers)

    def take_buffered(self) -> bytes:
        """Remove and return unparsed bytes (e.g. to hand a connection over)."""
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        data = bytes(self._buf)
        self._buf.clear()
        return data

    # -- sending ----------------------------------------------------------------------------

    def send(self, event: Event, *, head_request: bool = False) -> bytes:
        """Serialise one outgoing event, framing the body by the head's own headers.

        For a response to a HEAD request pass ``head_request=True`` (no body follows).
        """
        if isinstance(event, Request):
            cl, chunked = _framing(event.headers)
            self._out_chunked = chunked
            self._out_remaining = cl if not chunked else None
            self._out_no_body = False
            return encode_request_head(event.method, event.target, event.headers, event.version)
        if isinstance(event, Response):
            cl, chunked = _framing(event.headers)
            no_body = head_request or event.status in (204, 304) or event.status < 200
            self._out_no_body = no_body
            self._out_chunked = chunked and not no_body
            self._out_remaining = cl if not chunked else None
            return encode_response_head(event.status, event.headers, event.reason, event.version)
        if isinstance(event, Data):
            if self._out_no_body or not event.data:
                return b""
            if self._out_chunked:
                return encode_chunk(event.data)
            if self._out_remaining is not None:
                if len(event.data) > self._out_remaining:
                    raise ValueError("body longer than Content-Length")
                self._out_remaining -= len(event.data)
            return event.data
        if isinstance(event, EndOfMessage):
            if self._out_chunked and not self._out_no_body:
                self._out_chunked = False
                if event.trailers:
                    return b"0\r\n" + _encode_fields(event.trailers) + b"\r\n"
                return b"0\r\n\r\n"
            if self._out_remaining and not self._out_no_body:
                raise ValueError("body shorter than Content-Length")
            return b""
        return b""


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    cl: int | None = None
    chunked = False
    for k, v in headers:
        lk = k.lower()
        if lk == b"content-length":
            cl = int(v)
        elif lk == b"transfer-encoding":
            chunked = v.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
    return cl, chunked


def _encode_fields(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([k + b": " + v + b"\r\n" for k, v in headers])


def encode_request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], version: bytes = b"1.1"
) -> bytes:
    return b"%s %s HTTP/%s\r\n%s\r\n" % (method, target, version, _encode_fields(headers))


def encode_response_head(
    status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"", version: bytes = b"1.1"
) -> bytes:
    return b"HTTP/%s %d %s\r\n%s\r\n" % (
        version,
        status,
        reason or reason_phrase(status),
        _encode_fields(headers),
    )


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
