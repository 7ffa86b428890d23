"""A bounded, disk-backed queue of octet-counted RFC 5424 frames for forwarding.

The writer thread appends frames (``append``) to numbered segment files; the forwarder reads
frame-aligned chunks from a persisted cursor (``read``), sends them and then ``ack``s them.
A restart resumes from the last persisted cursor, so a message can be sent twice after a
crash (at least once), never silently skipped. Past ``max_bytes`` new frames are dropped and
counted: the queue never grows without bound while the upstream is down.

TCP syslog has no application acknowledgement: bytes accepted by the kernel just before the
upstream dies can still be lost (RELP exists for that); the queue covers everything after.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

SEGMENT_BYTES = 4 * 1024 * 1024


def complete_frames(chunk: bytes) -> int:
    """Length of the prefix of ``chunk`` made of whole ``LEN SP MSG`` frames."""
    pos = 0
    n = len(chunk)
    while pos < n:
        sp = chunk.find(b" ", pos, pos + 12)
        if sp < 0:
            break
        digits = chunk[pos:sp]
        if not digits.isdigit():
            break
        end = sp + 1 + int(digits)
        if end > n:
            break
        pos = end
    return pos


class ForwardSpool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        segs = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
        self.read_seg, self.read_off = self._load_cursor(segs[0] if segs else 0)
        segs = [s for s in segs if s >= self.read_seg]
        for p in directory.glob("*.seg"):  # older than the cursor: already sent
            if p.stem.isdigit() and int(p.stem) < self.read_seg:
                p.unlink()
        self.tail_seg = segs[-1] if segs else self.read_seg
        path = self._path(self.tail_seg)
        self.tail_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.tail_size = os.fstat(self.tail_fd).st_size
        cut = complete_frames(path.read_bytes()) if self.tail_size else 0
        if cut != self.tail_size:  # crash in the middle of an append
            os.ftruncate(self.tail_fd, cut)
            self.tail_size = cut
        if self.read_seg == self.tail_seg:
            self.read_off = min(self.read_off, self.tail_size)
        older = sum(self._path(s).stat().st_size for s in segs if s != self.tail_seg)
        self.queued = max(0, older + self.tail_size - self.read_off)
        self.dropped = 0
        self.sent = 0

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.seg"

    def _load_cursor(self, default_seg: int) -> tuple[int, int]:
        try:
            seg_text, off_text = (self.dir / "cursor").read_text().split()
            return int(seg_text), int(off_text)
        except (OSError, ValueError):
            return default_seg, 0

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self.read_seg} {self.read_off}\n")
        os.replace(tmp, self.dir / "cursor")

    # ---- writer thread

    def append(self, frames: list[bytes]) -> None:
        data = b"".join(frames)
        with self.lock:
            if self.queued + len(data) > self.max_bytes:
                self.dropped += len(frames)
                return
            if self.tail_size and self.tail_size + len(data) > self.segment_bytes:
                os.close(self.tail_fd)
                self.tail_seg += 1
                self.tail_fd = os.open(
                    self._path(self.tail_seg),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
                self.tail_size = 0
        try:
            n = os.write(self.tail_fd, data)
        except OSError:
            with self.lock:
                self.dropped += len(frames)
            raise
        if n != len(data):  # disk full in the middle: cut back to whole frames
            os.ftruncate(self.tail_fd, self.tail_size)
            with self.lock:
                self.dropped += len(frames)
            return
        with self.lock:
            self.tail_size += n
            self.queued += n

    # ---- forwarder (in an executor thread)

    def read(self, max_bytes: int) -> bytes:
        """Whole frames from the cursor, at most ``max_bytes`` (unless one frame is larger)."""
        while True:
            with self.lock:
                seg, off = self.read_seg, self.read_off
                limit = self.tail_size if seg == self.tail_seg else None
            if limit is not None and off >= limit:
                return b""
            try:
                with open(self._path(seg), "rb") as f:
                    f.seek(off)
                    want = max_bytes if limit is None else min(max_bytes, limit - off)
                    chunk = f.read(want)
            except FileNotFoundError:
                chunk = b""
            if chunk:
                n = complete_frames(chunk)
                if n == 0:  # a frame longer than max_bytes
                    return self.read(max_bytes * 2)
                return chunk[:n]
            if limit is None:  # finished an older segment: move on
                with self.lock:
                    self.read_seg, self.read_off = seg + 1, 0
                    self._save_cursor()
                with contextlib.suppress(FileNotFoundError):
                    self._path(seg).unlink()
                continue
            return b""

    def ack(self, nbytes: int, frames: int) -> None:
        with self.lock:
            self.read_off += nbytes
            self.queued -= nbytes
            self.sent += frames
            self._save_cursor()

    def close(self) -> None:
        with self.lock:
            os.close(self.tail_fd)
