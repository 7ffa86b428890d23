"""A bounded receive buffer for sans-I/O codecs.

Every codec keeps the bytes it has not parsed yet in one of these. The buffer refuses to grow
past ``max_bytes`` (raising ``BufferLimitExceeded`` with the codec's reply), which is what keeps
server memory bounded against a peer that never sends a line terminator.

Line search remembers where it stopped, so feeding a long line in many small pieces costs
O(total) rather than O(pieces x length): the classic slowloris shape.
"""

from __future__ import annotations

from hastack.errors import BufferLimitExceeded


class ReceiveBuffer:
    __slots__ = ("_buf", "_scan_from", "max_bytes", "overflow_reply")

    def __init__(self, max_bytes: int, overflow_reply: bytes = b"") -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._buf = bytearray()
        self._scan_from = 0  # no line terminator exists before this offset
        self.max_bytes = max_bytes
        self.overflow_reply = overflow_reply

    def __len__(self) -> int:
        return len(self._buf)

    def __bool__(self) -> bool:
        return bool(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes; raise ``BufferLimitExceeded`` past ``max_bytes``."""
        if len(self._buf) + len(data) > self.max_bytes:
            raise BufferLimitExceeded(
                f"receive buffer over {self.max_bytes} bytes", self.overflow_reply, fatal=True
            )
        self._buf += data

    def find(self, needle: bytes, start: int = 0) -> int:
        return self._buf.find(needle, start)

    def take_line(self, terminator: bytes = b"\n") -> bytes | None:
        """Remove and return one line including its terminator, or None if none is complete."""
        idx = self._buf.find(terminator, self._scan_from)
        if idx < 0:
            # Resume just before the end next time, in case the terminator is split.
            self._scan_from = max(0, len(self._buf) - len(terminator) + 1)
            return None
        end = idx + len(terminator)
        line = bytes(self._buf[:end])
        del self._buf[:end]
        self._scan_from = 0
        return line

    def pending_line_length(self) -> int:
        """Bytes waiting without a terminator: what a line-length limit is checked against."""
        return len(self._buf)

    def take(self, n: int) -> bytes | None:
        """Remove and return exactly ``n`` bytes, or None if fewer are buffered."""
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scan_from = 0
        return data

    def take_all(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        return data

    def discard(self, n: int) -> int:
        """Drop up to ``n`` bytes (e.g. a data block being swallowed); return how many."""
        n = min(n, len(self._buf))
        del self._buf[:n]
        self._scan_from = 0
        return n

    def peek(self, n: int | None = None) -> bytes:
        return bytes(self._buf if n is None else self._buf[:n])
