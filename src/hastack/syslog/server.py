"""The syslog collector: UDP, TCP and TLS in, files per host/program out, optional relay.

Data path: a connection's bytes go through ``TcpFramer`` and ``parse_message`` on the event
loop; formatted lines are batched by ``Writer`` and appended by one writer thread (``Store``).
A TCP connection is paused after each chunk until the writer has put that chunk's lines in
the files (group commit across connections), so a slow or full disk slows senders down
through TCP flow control instead of dropping what they sent. UDP cannot be slowed: datagrams
arriving while more than ``max_pending_bytes`` wait for the disk are dropped and counted,
next to the kernel's own drop counter for the socket (/proc/net/udp).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import socket
import ssl
import time
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from hastack.config import Address, HostConfig
from hastack.core.net import ConnectionProtocol, set_rcvbuf
from hastack.core.service import Service
from hastack.syslog.config import SyslogConfig
from hastack.syslog.forward import ForwardSpool
from hastack.syslog.proto import (
    FACILITIES,
    SEVERITIES,
    SyslogRecord,
    TcpFramer,
    encode_rfc5424,
    fast_line,
    format_line,
    frame_octet_counted,
    parse_message,
)
from hastack.syslog.reader import Filter, LogReader
from hastack.syslog.store import DiskFull, Store, finish_rotated, render_path


def _tz(name: str) -> _dt.tzinfo:
    if name == "local":
        local = _dt.datetime.now().astimezone().tzinfo
        return local if local is not None else _dt.UTC
    return zoneinfo.ZoneInfo(name)


UDP_BATCH_INTERVAL = 0.005  # seconds UDP lines may wait to be batched into one write
FOLLOW_QUEUE_LINES = 10_000  # lines queued per `logs tail -f` follower before dropping


class Writer:
    """Loop-side batching in front of the writer thread (one batch in flight at a time)."""

    def __init__(self, service: SyslogService, store: Store) -> None:
        self.svc = service
        self.store = store
        self.loop = asyncio.get_running_loop()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="syslog-writer")
        self.batch: dict[str, list[bytes]] = {}
        self.forward: list[bytes] = []
        self.batch_bytes = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.held: list[asyncio.Future[None]] = []  # waiting for a full disk to take them
        self.in_flight = False
        self.in_flight_bytes = 0
        self.held_bytes = 0
        self.disk_full = False
        self.last_error = ""
        self.retry: asyncio.TimerHandle | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def pending_bytes(self) -> int:
        return self.batch_bytes + self.in_flight_bytes + self.held_bytes

    def add(self, rel: str, line: bytes) -> None:
        lines = self.batch.get(rel)
        if lines is None:
            self.batch[rel] = [line]
        else:
            lines.append(line)
        self.batch_bytes += len(line)

    def commit(self) -> asyncio.Future[None]:
        """A future resolved when everything added so far is in the files."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.append(fut)
        self.kick()
        return fut

    def kick(self, *, retry: bool = False) -> None:
        if self.in_flight or (self.disk_full and not retry):
            return
        if not self.batch and not self.forward and not self.held:
            return
        batch, self.batch = self.batch, {}
        forward, self.forward = self.forward, []
        waiters, self.waiters = self.waiters, []
        self.in_flight = True
        self.in_flight_bytes = self.batch_bytes
        self.batch_bytes = 0
        self.idle.clear()
        fut = self.loop.run_in_executor(self.executor, self._write, batch, forward, time.time())
        fut.add_done_callback(lambda f: self._done(f, waiters))

    def _write(self, batch: dict[str, list[bytes]], forward: list[bytes], now: float) -> None:
        # writer thread
        if forward and self.svc.spool is not None:
            try:
                self.svc.spool.append(forward)
            except OSError as exc:
                self.svc.log.warning("forward queue: append failed: %s", exc)
        self.store.write(batch, now)

    def _done(self, f: asyncio.Future[None], waiters: list[asyncio.Future[None]]) -> None:
        self.in_flight = False
        exc = f.exception()
        if exc is not None:
            # Keep everything (the store kept the unwritten bytes); TCP senders stay paused.
            self.held.extend(waiters)
            self.held_bytes += self.in_flight_bytes
            self.in_flight_bytes = 0
            if not self.disk_full:
                self.svc.disk_full_events.value += 1
                self.svc.log.error("cannot write logs (%s); holding and retrying", exc)
            self.disk_full = True
            self.last_error = str(exc)
            if not isinstance(exc, DiskFull):
                self.svc.write_errors.value += 1
            if self.retry is None:
                self.retry = self.loop.call_later(
                    self.svc.cfg.disk_retry_interval, self._retry
                )
            return
        if self.disk_full:
            self.svc.log.warning("log writes resumed")
        self.disk_full = False
        self.last_error = ""
        done = self.held + waiters
        self.held = []
        self.held_bytes = 0
        self.in_flight_bytes = 0
        for w in done:
            if not w.done():
                w.set_result(None)
        if self.batch or self.forward:
            self.kick()
        else:
            self.idle.set()

    def _retry(self) -> None:
        self.retry = None
        if self.held or self.store.unwritten:
            self.kick(retry=True)
            if not self.in_flight:  # nothing new queued: write the leftovers alone
                self.in_flight = True
                self.in_flight_bytes = 0
                fut = self.loop.run_in_executor(self.executor, self.store.write, {}, time.time())
                fut.add_done_callback(lambda f: self._done(f, []))

    async def sync(self) -> None:
        await self.loop.run_in_executor(self.executor, self.store.sync_if_due)

    async def flush(self, timeout: float) -> None:
        if self.batch or self.forward:
            self.kick()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except TimeoutError:
            self.svc.log.error("shutdown: %d bytes could not be written", self.pending_bytes)

    def close(self) -> None:
        if self.retry is not None:
            self.retry.cancel()

        def finish() -> None:
            self.store.sync_if_due(force=True)
            self.store.close()

        self.executor.submit(finish).result()
        self.executor.shutdown(wait=True)


class SyslogTcp(ConnectionProtocol):
    """One TCP or TLS connection: frames in, paused until its lines are written."""

    def __init__(self, service: SyslogService, counter_name: str) -> None:
        self.svc = service
        self.framer = TcpFramer(service.cfg.max_message_bytes)
        self.source = "-"
        self.last_active = time.monotonic()
        self.waiting: asyncio.Future[None] | None = None
        self.close_after_write = False
        self.counter = service.stats.counter(f"{counter_name}_messages")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if peer else "-"
        self.svc.tcp_conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.svc.tcp_conns.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.svc.bytes_received.value += len(data)
        frames = self.framer.feed(data)
        if frames:
            self.counter.value += len(frames)
            self._submit(frames, self.framer.printable)

    def _submit(self, frames: list[tuple[bytes, bool]], printable: bool = False) -> None:
        fut = self.svc.ingest(frames, self.source, printable)
        if not fut.done():
            self.waiting = fut
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
            fut.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[None]) -> None:
        self.waiting = None
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.close_after_write:
            t.close()
        else:
            t.resume_reading()

    def eof_received(self) -> bool | None:
        frames = self.framer.close()
        if frames:
            self.counter.value += len(frames)
            self._submit(frames)
        if self.waiting is not None:
            self.close_after_write = True
            return True  # half-close: answer the EOF once the last lines are on disk
        return False

    def graceful_close(self) -> None:
        if self.waiting is not None:
            self.close_after_write = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
        elif self.transport is not None:
            self.transport.close()


class SyslogUdp(asyncio.DatagramProtocol):
    def __init__(self, service: SyslogService, local_source: str | None = None) -> None:
        self.svc = service
        self.local_source = local_source  # unix socket: the peer is this host

    def datagram_received(self, data: bytes, addr: Any) -> None:
        source = self.local_source or (addr[0] if addr else "-")
        self.svc.ingest_datagram(data, source)

    def error_received(self, exc: Exception) -> None:
        self.svc.udp_errors.value += 1


def bind_unix_dgram(path: Path, rcvbuf_bytes: int) -> socket.socket:
    if path.is_socket():
        path.unlink()  # a stale socket from a previous run
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o666)  # like /dev/log: any local process may log
        set_rcvbuf(sock, rcvbuf_bytes)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def udp_kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's drop counter for this socket from /proc/net/udp{,6} (matched by inode)."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == inode:
                        return int(fields[-1])
        except OSError:
            continue
    return None


class SyslogService(Service):
    name = "syslog"

    def __init__(self, config: SyslogConfig, host: HostConfig | None = None) -> None:
        super().__init__(config, host)
        self.cfg = config
        default_root = self.host.data_dir / "syslog"
        self.root = config.data_dir if config.data_dir is not None else default_root
        self.tz = _tz(config.timezone)
        self.tcp_conns: set[SyslogTcp] = set()
        self.spool: ForwardSpool | None = None
        self.writer: Writer | None = None
        self.unix_transport: asyncio.DatagramTransport | None = None
        self.unix_path: Path | None = None
        self.udp_sock: socket.socket | None = None
        self.subscribers: set[tuple[Filter, asyncio.Queue[str | None]]] = set()
        self._path_cache: dict[tuple[str, str | None, int, int, str], str] = {}
        self._fast_paths: dict[tuple[bytes, bytes, int], str] = {}
        self._src_meta: dict[str, tuple[bytes, bytes]] = {}
        self._udp_flush_scheduled = False
        self._date_in_path = "{date}" in config.path_template
        self.forward_connected = False
        s = self.stats
        self.messages = s.counter("messages_received", "messages parsed (all transports)")
        self.udp_messages = s.counter("udp_messages", "UDP datagrams received")
        self.bytes_received = s.counter("bytes_received", "TCP/TLS bytes received")
        self.lines_queued = s.counter("lines_queued", "lines handed to the writer")
        self.raw_messages = s.counter("raw_messages", "messages stored raw (did not parse)")
        self.noted_messages = s.counter("noted_messages", "messages stored with a parser note")
        self.truncated = s.counter("truncated_messages", "messages cut at max_message_bytes")
        self.udp_dropped = s.counter(
            "udp_dropped_backlog", "UDP messages dropped: writer backlog over max_pending_bytes"
        )
        self.udp_errors = s.counter("udp_errors", "errors reported on the UDP socket")
        self.write_errors = s.counter("write_errors", "failed writes other than disk full")
        self.disk_full_events = s.counter("disk_full_events", "times writing stopped")
        self.idle_closed = s.counter("idle_closed", "TCP connections closed by idle_timeout")
        self.forward_sent = s.counter("forward_sent", "messages relayed upstream")
        self.follow_dropped = s.counter("follow_dropped", "lines a slow follower missed")
        s.counter("tcp_messages", "messages received over TCP")
        s.counter("tls_messages", "messages received over TLS")

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.cfg
        self.root.mkdir(parents=True, exist_ok=True)
        self.rotate_executor = ThreadPoolExecutor(1, thread_name_prefix="syslog-rotate")
        store = Store(
            self.root,
            max_file_bytes=cfg.max_file_bytes,
            rotate_interval=cfg.rotate_interval,
            max_open_files=cfg.max_open_files,
            fsync=cfg.fsync,
            fsync_interval=cfg.fsync_interval,
            on_rotated=self._on_rotated,
        )
        self.store = store
        self.writer = Writer(self, store)
        self.reader = LogReader(self.root)
        if cfg.forward is not None:
            self.spool = ForwardSpool(self.root / ".forward", cfg.forward_max_queue_bytes)
            self.forward_event = asyncio.Event()
            self.spawn(self._forward_loop(cfg.forward), name="forward")
        s = self.stats
        s.gauge("disk_full", lambda: int(self.writer is not None and self.writer.disk_full))
        s.gauge("pending_bytes", lambda: self.writer.pending_bytes if self.writer else 0)
        s.gauge("unwritten_bytes", lambda: self.store.unwritten_bytes)
        s.gauge("bytes_written", lambda: self.store.bytes_written)
        s.gauge("rotations", lambda: self.store.rotations)
        s.gauge("fsyncs", lambda: self.store.fsyncs)
        s.gauge("repaired_files", lambda: self.store.repaired_files)
        s.gauge("curr_connections", lambda: len(self.tcp_conns))
        s.gauge("followers", lambda: len(self.subscribers))
        if self.spool is not None:
            spool = self.spool
            s.gauge("forward_queue_bytes", lambda: spool.queued)
            s.gauge("forward_dropped", lambda: spool.dropped)
            s.gauge("forward_connected", lambda: int(self.forward_connected))
        if cfg.udp_listen is not None:
            udp = await self.listen_udp(
                cfg.udp_listen,
                lambda: SyslogUdp(self),
                name="udp",
                rcvbuf_bytes=cfg.udp_rcvbuf_bytes,
            )
            self.udp_sock = udp.transport.get_extra_info("socket")
            s.gauge("udp_rcvbuf_bytes", lambda: udp.rcvbuf_bytes)
            s.gauge("udp_kernel_drops", self._kernel_drops)
        if cfg.unix_listen is not None:
            await self._start_unix(cfg.unix_listen)
        if cfg.tcp_listen is not None:
            await self.listen_tcp(
                cfg.tcp_listen,
                lambda: SyslogTcp(self, "tcp"),
                name="tcp",
                max_connections=cfg.max_connections,
            )
        if cfg.tls_listen is not None:
            await self._start_tls(cfg.tls_listen)
        if cfg.idle_timeout:
            self.spawn(self._idle_loop(cfg.idle_timeout), name="idle")
        if cfg.fsync == "interval":
            self.spawn(self._fsync_loop(cfg.fsync_interval), name="fsync")

    def _kernel_drops(self) -> int:
        if self.udp_sock is None or self.udp_sock.fileno() < 0:
            return 0
        drops = udp_kernel_drops(self.udp_sock)
        return drops if drops is not None else -1

    async def _start_tls(self, address: Address) -> None:
        cfg = self.cfg
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9662
        assert cfg.tls_cert_file is not None and cfg.tls_key_file is not None
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
        if cfg.tls_ca_file is not None:
            ctx.load_verify_locations(cfg.tls_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        await self.listen_tcp(
            address,
            lambda: SyslogTcp(self, "tls"),
            name="tls",
            max_connections=cfg.max_connections,
            ssl=ctx,
        )

    async def _start_unix(self, path: Path) -> None:
        """A local datagram socket (what syslog(3) writes to as /dev/log); the core has no
        unix listener, so it is created here and closed in close()."""
        sock = bind_unix_dgram(path, self.cfg.udp_rcvbuf_bytes)
        loop = asyncio.get_running_loop()
        self.unix_transport, _ = await loop.create_datagram_endpoint(
            lambda: SyslogUdp(self, local_source=self.host.name), sock=sock
        )
        self.unix_path = path

    def addresses(self) -> dict[str, str]:
        out = super().addresses()
        if self.unix_transport is not None:
            out["unix"] = str(self.unix_path)
        return out

    async def drain(self) -> None:
        if self.unix_transport is not None:
            self.unix_transport.close()
            if self.unix_path is not None:
                unlink_quietly(self.unix_path)
        if self.writer is not None:
            await self.writer.flush(self.cfg.shutdown_timeout)
        for _, q in list(self.subscribers):
            q.put_nowait(None)

    async def close(self) -> None:
        if self.writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
        self.rotate_executor.shutdown(wait=True)
        if self.spool is not None:
            self.spool.close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        w = self.writer
        if w is not None and w.disk_full:
            # disk_full is also set for other write errors (EIO, EACCES): writing is blocked.
            return False, {
                "disk_full": True,
                "error": w.last_error,
                "pending_bytes": w.pending_bytes,
            }
        return True, {"disk_full": False}

    # ---- ingest (event loop)

    def _fast_rel(self, host: bytes, app: bytes, pri: int, now: float) -> str:
        rel = render_path(
            self.cfg.path_template, host.decode(), None if app == b"-" else app.decode(),
            FACILITIES[pri >> 3], SEVERITIES[pri & 7],
            time.strftime("%Y-%m-%d", time.gmtime(now)) if self._date_in_path else "",
        )  # fmt: skip
        if not self._date_in_path:  # with {date} in the template the answer changes daily
            if len(self._fast_paths) > 10000:
                self._fast_paths.clear()
            self._fast_paths[(host, app, pri)] = rel
        return rel

    def _rel(self, rec: SyslogRecord, now: float) -> str:
        host = rec.hostname or rec.source
        date = time.strftime("%Y-%m-%d", time.gmtime(now)) if self._date_in_path else ""
        key = (host, rec.app_name, rec.facility, rec.severity, date)
        rel = self._path_cache.get(key)
        if rel is None:
            if len(self._path_cache) > 10000:
                self._path_cache.clear()
            rel = render_path(
                self.cfg.path_template, host, rec.app_name, FACILITIES[rec.facility],
                SEVERITIES[rec.severity], date,
            )  # fmt: skip
            self._path_cache[key] = rel
        return rel

    def _record(self, payload: bytes, truncated: bool, source: str, now: float) -> None:
        rec = parse_message(payload, received=now, source=source, tz=self.tz)
        if truncated:
            self.truncated.value += 1
            rec.note = f"{rec.note}+truncated" if rec.note else "truncated"
        if rec.note is not None:
            self.noted_messages.value += 1
            if rec.fmt == "raw":
                self.raw_messages.value += 1
        line = format_line(rec)
        assert self.writer is not None
        self.writer.add(self._rel(rec, now), line.encode("utf-8", "backslashreplace"))
        if self.spool is not None:
            self.writer.forward.append(frame_octet_counted(encode_rfc5424(rec)))
        if self.subscribers:
            self._publish(line)

    def _publish(self, line: str) -> None:
        for flt, q in list(self.subscribers):
            if flt.match_line(line):
                if q.qsize() < FOLLOW_QUEUE_LINES:
                    q.put_nowait(line)
                else:  # a follower that reads slower than logs arrive misses lines
                    self.follow_dropped.value += 1

    def ingest(
        self, frames: list[tuple[bytes, bool]], source: str, printable: bool = False
    ) -> asyncio.Future[None]:
        self._add_frames(frames, source, time.time(), printable)
        n = len(frames)
        self.messages.value += n
        self.lines_queued.value += n
        assert self.writer is not None
        return self.writer.commit()

    def _add_frames(
        self, frames: list[tuple[bytes, bool]], source: str, now: float, printable: bool = False
    ) -> None:
        writer = self.writer
        assert writer is not None
        if self.spool is None:
            # Fast path for the common RFC 5424 shape (proto.fast_line); the rest, and every
            # message when forwarding, goes through the full record.
            src_meta = self._src_meta.get(source)
            if src_meta is None:
                if len(self._src_meta) > 10000:
                    self._src_meta.clear()
                src_b = source.encode()
                src_meta = self._src_meta[source] = (src_b, b"fmt=5424,src=" + src_b)
            src, meta = src_meta
            cache = self._fast_paths
            batch = writer.batch  # writer.add inlined: this loop is the TCP hot path
            nbytes = 0
            subscribers = self.subscribers
            for payload, truncated in frames:
                got = None if truncated else fast_line(payload, src, meta, printable)
                if got is None:
                    self._record(payload, truncated, source, now)
                    continue
                line, host, app, pri = got
                rel = cache.get((host, app, pri))
                if rel is None:
                    rel = self._fast_rel(host, app, pri, now)
                lines = batch.get(rel)
                if lines is None:
                    batch[rel] = [line]
                else:
                    lines.append(line)
                nbytes += len(line)
                if subscribers:
                    self._publish(line.decode("utf-8", "backslashreplace"))
            writer.batch_bytes += nbytes
        else:
            for payload, truncated in frames:
                self._record(payload, truncated, source, now)

    def ingest_datagram(self, data: bytes, source: str) -> None:
        self.udp_messages.value += 1
        w = self.writer
        assert w is not None
        if w.pending_bytes > self.cfg.max_pending_bytes:
            self.udp_dropped.value += 1
            return
        limit = self.cfg.max_message_bytes
        if len(data) > limit:
            self._add_frames([(data[:limit], True)], source, time.time())
        else:
            self._add_frames([(data, False)], source, time.time())
        self.messages.value += 1
        self.lines_queued.value += 1
        if not w.in_flight and not w.disk_full and not self._udp_flush_scheduled:
            # Batch what arrives in the next 5 ms instead of one write per datagram (nobody
            # waits for a UDP message to be written; the writer thread's wake-ups cost CPU).
            self._udp_flush_scheduled = True
            asyncio.get_running_loop().call_later(UDP_BATCH_INTERVAL, self._udp_flush)

    def _udp_flush(self) -> None:
        self._udp_flush_scheduled = False
        if self.writer is not None and not self.writer.disk_full:
            self.writer.kick()

    # ---- background loops

    def _on_rotated(self, path: Path, original_name: str) -> None:
        # writer thread: hand compression and retention to their own thread
        cfg = self.cfg
        self.rotate_executor.submit(
            finish_rotated,
            path,
            original_name,
            compress=cfg.compress,
            max_rotated_files=cfg.max_rotated_files,
            max_rotated_age=cfg.max_rotated_age,
            now=time.time(),
        )

    async def _fsync_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.writer is not None and not self.writer.disk_full:
                await self.writer.sync()

    async def _idle_loop(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 2, 30.0))
            cutoff = time.monotonic() - timeout
            for conn in list(self.tcp_conns):
                if conn.last_active < cutoff and conn.waiting is None and conn.transport:
                    self.idle_closed.value += 1
                    conn.transport.close()

    async def _forward_loop(self, target: Address) -> None:
        spool = self.spool
        assert spool is not None
        loop = asyncio.get_running_loop()
        reader_pool = ThreadPoolExecutor(1, thread_name_prefix="syslog-forward")
        delay = self.cfg.forward_reconnect_interval
        chunk_bytes = max(256 * 1024, 2 * self.cfg.max_message_bytes + 32)
        tls = self._forward_tls_context()
        try:
            while True:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(
                            target.host,
                            target.port,
                            ssl=tls,
                            server_hostname=target.host if tls is not None else None,
                        ),
                        30.0,
                    )
                except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                    self.log.debug("forward: connect to %s failed: %s", target, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                self.log.info("forward: connected to %s", target)
                self.forward_connected = True
                delay = self.cfg.forward_reconnect_interval
                eof = asyncio.ensure_future(reader.read())  # the upstream says nothing; EOF = gone
                try:
                    while not eof.done():
                        chunk = await loop.run_in_executor(reader_pool, spool.read, chunk_bytes)
                        if not chunk:
                            await asyncio.wait([eof], timeout=0.05)
                            continue
                        writer.write(chunk)
                        await writer.drain()
                        frames = _count_frames(chunk)
                        await loop.run_in_executor(reader_pool, spool.ack, len(chunk), frames)
                        self.forward_sent.value += frames
                    self.log.warning("forward: %s closed the connection", target)
                except (OSError, ConnectionError) as exc:
                    self.log.warning("forward: connection to %s lost: %s", target, exc)
                finally:
                    self.forward_connected = False
                    eof.cancel()
                    writer.close()
                await asyncio.sleep(delay)
        finally:
            reader_pool.shutdown(wait=False)

    def _forward_tls_context(self) -> ssl.SSLContext | None:
        cfg = self.cfg
        if not cfg.forward_tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.forward_tls_ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9662
        if cfg.forward_tls_cert_file is not None and cfg.forward_tls_key_file is not None:
            ctx.load_cert_chain(cfg.forward_tls_cert_file, cfg.forward_tls_key_file)
        return ctx

    # ---- admin: reading

    def admin_routes(self) -> list[web.RouteDef]:
        return [web.get("/logs", self._logs)]

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        mode = request.query.get("mode", "tail")
        try:
            flt = Filter.from_query(request.query)
            limit = int(request.query.get("limit", "10" if mode == "tail" else "0") or 0)
            if mode not in ("tail", "grep") or limit < 0:
                raise ValueError("mode must be tail or grep, limit >= 0")
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        follow = request.query.get("follow", "") in ("1", "true", "yes")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        entry = (flt, queue)
        if follow:
            self.subscribers.add(entry)  # before reading history: nothing falls in between
        try:
            if request.query.get("history") == "0":
                lines: list[str] = []
            elif mode == "grep":
                lines = await loop.run_in_executor(None, self.reader.grep, flt, limit)
            else:
                lines = await loop.run_in_executor(None, self.reader.tail, flt, limit)
            for i in range(0, len(lines), 1000):
                await resp.write("".join(lines[i : i + 1000]).encode("utf-8", "backslashreplace"))
            recent = set(lines[-1000:])  # lines both read back and queued: print once
            del lines
            if not follow:
                await resp.write_eof()
                return resp
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    # aiohttp does not cancel handlers when the client leaves: look.
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                if line is None:
                    break
                if line in recent:
                    recent.discard(line)
                    continue
                await resp.write(line.encode("utf-8", "backslashreplace"))
        except ConnectionResetError:
            pass  # the reader went away
        finally:
            self.subscribers.discard(entry)
        return resp


def _count_frames(chunk: bytes) -> int:
    n = pos = 0
    while pos < len(chunk):
        sp = chunk.find(b" ", pos)
        if sp < 0:
            break
        pos = sp + 1 + int(chunk[pos:sp])
        n += 1
    return n
