"""Static files: safe path mapping, validators (ETag/Last-Modified), Range, and sendfile.

Path safety: the raw request path is percent-decoded once; encoded slashes and backslashes
(``%2f``, ``%5c``), NUL bytes, and ``.``/``..`` segments are refused outright; the final path is
resolved (symlinks followed) and must still lie inside the resolved root.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    from hastack.proxy.http import HTTPProtocol

_SENDFILE_CHUNK = 1 << 20
_COPY_CHUNK = 256 * 1024


class BadPath(Exception):
    """The request path may not be mapped to a file (answered 400 or 404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def safe_path(root_real: str, raw_path: bytes) -> str:
    """Map a raw URL path (no query) to a real file system path inside ``root_real``."""
    low = raw_path.lower()
    if b"%2f" in low or b"%5c" in low or b"%00" in low or b"\\" in raw_path:
        raise BadPath(400, "encoded slash, backslash or NUL in path")
    decoded = unquote_to_bytes(raw_path)
    if b"\x00" in decoded:
        raise BadPath(400, "NUL in path")
    parts = []
    for seg in decoded.split(b"/"):
        if not seg or seg == b".":
            continue
        if seg == b"..":
            raise BadPath(400, "'..' in path")
        parts.append(seg)
    try:
        rel = os.fsdecode(b"/".join(parts))
    except UnicodeDecodeError:
        raise BadPath(400, "undecodable path") from None
    candidate = os.path.join(root_real, rel) if rel else root_real
    real = os.path.realpath(candidate)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise BadPath(404, "outside the static root")
    return real


def content_type(path: str) -> bytes:
    ctype, encoding = mimetypes.guess_type(path, strict=False)
    if ctype is None or encoding is not None:
        return b"application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        return ctype.encode() + b"; charset=utf-8"
    return ctype.encode()


def etag_for(st: os.stat_result) -> bytes:
    return b'"%x-%x"' % (st.st_mtime_ns, st.st_size)


def not_modified(
    etag: bytes, mtime: int, if_none_match: bytes | None, if_modified_since: bytes | None
) -> bool:
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(b",")]
        return b"*" in tags or etag in tags or b"W/" + etag in tags
    if if_modified_since is not None:
        try:
            ims = parsedate_to_datetime(if_modified_since.split(b";")[0].decode("latin-1"))
        except (TypeError, ValueError, IndexError):
            return False
        return mtime <= int(ims.timestamp())
    return False


def parse_range(value: bytes, size: int) -> tuple[int, int] | bool | None:
    """One ``bytes=`` range -> (start, end inclusive); None = ignore (serve 200); False = 416."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None  # unknown unit or multiple ranges: serve the whole file
    first, dash, last = spec.strip().partition(b"-")
    if not dash:
        return None
    try:
        if not first:
            n = int(last)
            if n <= 0:
                return False
            return (max(0, size - n), size - 1) if size else False
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return False
    if start < 0 or end < start:
        return None
    return start, min(end, size - 1)


async def send_file(
    conn: HTTPProtocol, fd: int, offset: int, count: int, send_timeout: float
) -> None:
    """Send ``count`` bytes of ``fd`` from ``offset``: loop.sendfile, else os.sendfile by hand.

    uvloop does not implement ``loop.sendfile``; there we call ``os.sendfile`` on the socket
    whenever the transport's own buffer is empty, and fall back to one buffered chunk (which the
    transport flow-controls) when the socket would block.
    """
    transport = conn.transport
    assert transport is not None
    loop = conn.loop
    if count <= 0:
        return
    f = os.fdopen(fd, "rb", closefd=False)
    try:
        await loop.sendfile(transport, f, offset, count)
        return
    except (NotImplementedError, RuntimeError, AttributeError):
        pass  # uvloop (or an unsupported transport): do it by hand below
    finally:
        f.close()
    sock = transport.get_extra_info("socket")
    out_fd = sock.fileno() if sock is not None else -1
    transport.set_write_buffer_limits(high=64 * 1024, low=0)
    try:
        while count > 0:
            await conn.drain(send_timeout)
            if out_fd >= 0 and transport.get_write_buffer_size() == 0:
                try:
                    n = os.sendfile(out_fd, fd, offset, min(count, _SENDFILE_CHUNK))
                except BlockingIOError:
                    n = -1
                except OSError as exc:
                    raise ConnectionResetError(str(exc)) from exc
                if n == 0:
                    raise ConnectionResetError("file shrank while being sent")
                if n > 0:
                    offset += n
                    count -= n
                    continue
            data = os.pread(fd, min(count, _COPY_CHUNK), offset)
            if not data:
                raise ConnectionResetError("file shrank while being sent")
            transport.write(data)
            offset += len(data)
            count -= len(data)
        await conn.drain(send_timeout)
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits()


class StaticFile:
    """An open file ready to serve, with its validators."""

    __slots__ = ("etag", "fd", "last_modified", "mtime", "path", "size")

    def __init__(self, path: str, fd: int, st: os.stat_result) -> None:
        self.path = path
        self.fd = fd
        self.size = st.st_size
        self.mtime = int(st.st_mtime)
        self.etag = etag_for(st)
        self.last_modified = formatdate(st.st_mtime, usegmt=True).encode()


def allowed_file(path: str, roots: tuple[Path, ...]) -> str | None:
    """X-REPROXY-FILE: the real path when it lies under one of ``roots`` (or roots is empty)."""
    real = os.path.realpath(path)
    if roots and not any(real.startswith(os.path.realpath(r) + os.sep) for r in roots):
        return None
    return real


def open_static(
    path: str, root_real: str | None = None, index: str = "index.html"
) -> StaticFile | None:
    """Open a regular file (a directory's index file) inside ``root_real``; else None."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            path = os.path.join(path, index)
            st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        if root_real is not None:
            real = os.path.realpath(path)
            if real != root_real and not real.startswith(root_real + os.sep):
                return None  # e.g. an index.html symlinked out of the root
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    return StaticFile(path, fd, st)


def resolve_root(root: Path) -> str:
    return os.path.realpath(root)
