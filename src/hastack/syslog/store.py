"""Log files on disk: append, rotate, compress, expire, survive a full disk.

Everything here is blocking and runs in the collector's writer thread (never on the event
loop). ``Store.write`` takes a batch of formatted lines per relative path and appends each
batch with ``os.write`` on an ``O_APPEND`` descriptor, so every line reaches the page cache
whole, in order, once. When the disk is full the unwritten bytes are kept (in memory, bounded
by the caller) and ``DiskFull`` is raised; the next call writes them first. A partial line
left by a crash (kill -9 in the middle of a write) is cut off when the file is next opened.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from hastack.syslog.proto import parse_ts

log = logging.getLogger("hastack.syslog.store")

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class DiskFull(OSError):
    """The file system refused a write for lack of space; unwritten data is kept."""


def safe_component(value: str | None, default: str = "unknown") -> str:
    """A string from the network made safe as one path component (no '/', no '..')."""
    if not value:
        return default
    value = _UNSAFE.sub("_", value)[:128]
    if value.startswith("."):
        value = "_" + value[1:]
    return value or default


def render_path(template: str, host: str, program: str | None, facility: str, severity: str,
                date: str) -> str:  # fmt: skip
    return template.format(
        host=safe_component(host),
        program=safe_component(program),
        facility=facility,
        severity=severity,
        date=date,
    )


class _Open:
    __slots__ = ("fd", "path", "size", "started")

    def __init__(self, fd: int, path: Path, size: int, started: float) -> None:
        self.fd = fd
        self.path = path
        self.size = size
        self.started = started


class Store:
    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int,
        rotate_interval: float,
        max_open_files: int,
        fsync: str,
        fsync_interval: float,
        on_rotated: Callable[[Path, str], None] | None = None,
    ) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.rotate_interval = rotate_interval
        self.max_open_files = max_open_files
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.on_rotated = on_rotated
        self.files: OrderedDict[str, _Open] = OrderedDict()
        self.unwritten: dict[str, bytes] = {}
        self.dirty: set[int] = set()
        self.last_fsync = time.monotonic()
        # counters (read from the loop thread: plain ints, torn reads are harmless)
        self.bytes_written = 0
        self.rotations = 0
        self.repaired_files = 0
        self.fsyncs = 0
        root.mkdir(parents=True, exist_ok=True)

    @property
    def unwritten_bytes(self) -> int:
        return sum(len(v) for v in self.unwritten.values())

    def write(self, batch: dict[str, list[bytes]], now: float) -> None:
        """Append ``batch`` (after anything left over from a full disk); raise DiskFull."""
        for rel, lines in batch.items():
            data = b"".join(lines)
            prev = self.unwritten.get(rel)
            self.unwritten[rel] = prev + data if prev else data
        written: list[int] = []
        for rel in list(self.unwritten):
            self._write_one(rel, now, written)
        if self.fsync == "batch":
            for fd in written:
                os.fdatasync(fd)
            self.fsyncs += len(written)
            self.dirty.clear()
        elif self.fsync == "interval":
            self.dirty.update(written)
            self.sync_if_due()

    def sync_if_due(self, force: bool = False) -> None:
        if self.fsync == "none" or not self.dirty:
            return
        mono = time.monotonic()
        if not force and mono - self.last_fsync < self.fsync_interval:
            return
        for fd in list(self.dirty):
            try:
                os.fdatasync(fd)
            except OSError as exc:  # EBADF after a rotation closed it; ENOSPC on some fs
                if exc.errno != errno.EBADF:
                    log.warning("fdatasync failed: %s", exc)
            self.fsyncs += 1
        self.dirty.clear()
        self.last_fsync = mono

    def _write_one(self, rel: str, now: float, written: list[int]) -> None:
        data = self.unwritten[rel]
        view: memoryview | None = None
        try:
            f = self._open(rel, now, len(data))
            view = memoryview(data)
            while view:
                n = os.write(f.fd, view)
                f.size += n
                self.bytes_written += n
                view = view[n:]
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                if view is not None:
                    self.unwritten[rel] = bytes(view)
                raise DiskFull(exc.errno, f"{rel}: {exc.strerror}") from None
            raise
        del self.unwritten[rel]
        written.append(f.fd)

    def _open(self, rel: str, now: float, incoming: int) -> _Open:
        f = self.files.get(rel)
        if f is not None:
            self.files.move_to_end(rel)
            if (f.size and f.size + incoming > self.max_file_bytes) or (
                self.rotate_interval and now - f.started >= self.rotate_interval and f.size
            ):
                self._rotate(rel, f, now)
                f = None
        if f is None:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            size = os.fstat(fd).st_size
            started = now
            if size:
                size = self._repair(fd, path, size)
                started = self._first_ts(path, now)
            elif created and self.fsync != "none":
                dfd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            f = self.files[rel] = _Open(fd, path, size, started)
            if size and (
                size + incoming > self.max_file_bytes
                or (self.rotate_interval and now - started >= self.rotate_interval)
            ):
                self._rotate(rel, f, now)
                return self._open(rel, now, incoming)
            while len(self.files) > self.max_open_files:
                _, old = self.files.popitem(last=False)
                self._close(old)
        return f

    def _repair(self, fd: int, path: Path, size: int) -> int:
        """Cut a partial last line (a crash in the middle of a write); return the new size."""
        with open(path, "rb") as r:
            pos = size
            while pos > 0:
                step = min(65536, pos)
                r.seek(pos - step)
                chunk = r.read(step)
                if pos == size and chunk.endswith(b"\n"):
                    return size
                idx = chunk.rfind(b"\n")
                if idx >= 0:
                    pos = pos - step + idx + 1
                    break
                pos -= step
        log.warning("%s: cutting a partial last line (%d bytes)", path, size - pos)
        os.ftruncate(fd, pos)
        self.repaired_files += 1
        return pos

    @staticmethod
    def _first_ts(path: Path, now: float) -> float:
        try:
            with open(path, "rb") as r:
                head = r.read(27).decode("ascii", "replace")
        except OSError:
            return now
        ts = parse_ts(head)
        return ts if ts is not None and ts <= now else now

    def _rotate(self, rel: str, f: _Open, now: float) -> None:
        self._close(f)
        self.files.pop(rel, None)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        target = f.path.with_name(f"{f.path.name}.{stamp}")
        n = 1
        while target.exists() or target.with_name(target.name + ".gz").exists():
            target = f.path.with_name(f"{f.path.name}.{stamp}-{n}")
            n += 1
        os.rename(f.path, target)
        self.rotations += 1
        if self.on_rotated is not None:
            self.on_rotated(target, f.path.name)

    def _close(self, f: _Open) -> None:
        if self.fsync != "none" and f.fd in self.dirty:
            with contextlib.suppress(OSError):
                os.fdatasync(f.fd)
        self.dirty.discard(f.fd)
        os.close(f.fd)

    def close(self) -> None:
        for f in self.files.values():
            self._close(f)
        self.files.clear()


def finish_rotated(path: Path, original_name: str, *, compress: bool, max_rotated_files: int,
                   max_rotated_age: float, now: float) -> None:  # fmt: skip
    """Compress one rotated file and apply retention to its siblings (blocking)."""
    if compress and path.exists():
        gz = path.with_name(path.name + ".gz")
        tmp = gz.with_name(gz.name + ".tmp")
        try:
            with open(path, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            os.replace(tmp, gz)
            path.unlink()
        except OSError as exc:
            log.warning("%s: compression failed (%s); kept uncompressed", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
    rotated = re.compile(re.escape(original_name) + r"\.\d{8}T\d{6}(?:-\d+)?(?:\.gz)?")
    siblings = sorted(p for p in path.parent.iterdir() if rotated.fullmatch(p.name))
    doomed = siblings[: max(0, len(siblings) - max_rotated_files)]
    if max_rotated_age:
        for p in siblings:
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > max_rotated_age and p not in doomed:
                    doomed.append(p)
    for p in doomed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
