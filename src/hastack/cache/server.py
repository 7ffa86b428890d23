"""The cache service: an asyncio Protocol per connection around the sans-I/O codec and engine.

Per read: feed the codec, run every complete command, write all replies with one
``transport.write``. Backpressure: when a client's unsent replies pass
``max_write_buffer_bytes`` the transport calls ``pause_writing``; we stop reading that client
(and stop executing the commands already buffered) until ``resume_writing``. A client that
pipelines forever and never reads therefore holds at most one read buffer plus the write
high-water mark of server memory.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from aiohttp import web

from hastack.cache import proto
from hastack.cache.config import CacheConfig
from hastack.cache.engine import Engine, Quit, StreamReply
from hastack.cache.mrc import HotKeys, MissRatioCurve
from hastack.cache.proto import ServerCodec
from hastack.cache.state import CacheState
from hastack.config import HostConfig, ServiceConfig
from hastack.core.net import ConnectionProtocol, TcpListener
from hastack.core.service import Service
from hastack.errors import ProtocolError

# Replies gathered from one read are written in slices of at most this many bytes, so that one
# read of many pipelined gets cannot build an unbounded reply before backpressure is checked.
_BATCH_BYTES = 256 * 1024

# The expiry crawler visits every key about once per this many seconds.
_FULL_SWEEP_SECONDS = 60.0

_STATE_COUNTERS = (
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "total_items",
    "evictions",
    "evicted_unfetched",
    "expired_unfetched",
    "reclaimed",
    "crawler_reclaimed",
    "bytes",
)


def _getter(obj: object, name: str) -> Callable[[], int]:
    def get() -> int:
        value: int = getattr(obj, name)
        return value

    return get


class CacheProtocol(ConnectionProtocol):
    __slots__ = (
        "_codec", "_engine", "_eof", "_paused", "_stream", "_svc", "fd", "last_active",
    )  # fmt: skip

    def __init__(self, service: CacheService) -> None:
        self._svc = service
        self._engine = service.engine
        cfg = service.cfg
        self._codec = ServerCodec(max_value_bytes=cfg.max_item_bytes)
        self._paused = False
        self._eof = False
        self._stream: Iterator[bytes] | None = None  # a key dump being written
        self.fd = -1
        self.last_active = service.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        high = self._svc.cfg.max_write_buffer_bytes
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=high, low=high // 4)
        self._svc.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._svc.conns.discard(self)
        if self._stream is not None:
            self._end_stream()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._run()

    def data_received(self, data: bytes) -> None:
        self._svc.bytes_read += len(data)
        self.last_active = self._svc.now
        self._codec.receive_data(data)
        self._run()

    def eof_received(self) -> bool | None:
        if self._paused and self._codec.buffered:
            # the client half-closed with commands still waiting for it to read: keep the
            # connection until they are answered, then close (see the end of _run)
            self._eof = True
            return True
        return None  # close our side too, after what is queued has been written

    def _pump(self) -> bool:
        """Write the chunks of a streamed reply until done (True) or backpressure (False)."""
        assert self._stream is not None
        for chunk in self._stream:
            self._write([chunk])
            if self._paused:
                return False
        self._end_stream()
        return True

    def _end_stream(self) -> None:
        self._stream = None
        if self._svc.dumping is self:
            self._svc.dumping = None

    def _run(self) -> None:
        transport = self.transport
        if transport is None or self._paused or transport.is_closing():
            return
        if self._stream is not None and not self._pump():
            return
        codec = self._codec
        dispatch = self._engine._dispatch
        now = self._svc.now
        out: list[bytes] = []
        size = 0
        streamed = False
        while True:
            try:
                ev = codec.next_event()
                if ev is None:
                    break
                reply = dispatch[type(ev)](ev, now)
            except ProtocolError as err:
                if err.reply:
                    out.append(err.reply)
                if err.fatal:
                    self._write(out)
                    transport.close()
                    return
                continue
            except Quit:
                self._write(out)
                transport.close()
                return
            if isinstance(reply, StreamReply):
                if out or streamed:
                    # memcached's metadump must be the first command of its read
                    out.append(b"ERROR cannot pipeline other commands before metadump\r\n")
                    continue
                if self._svc.dumping is not None:
                    # one dump at a time (each holds a key snapshot), like memcached's crawler
                    out.append(b"BUSY currently processing crawler request\r\n")
                    continue
                streamed = True
                self._svc.dumping = self
                self._stream = reply.chunks
                if not self._pump():
                    return  # the rest (and later commands) wait for resume_writing
                continue
            if reply:
                out.append(reply)
                size += len(reply)
                # everything received is answered: skip the call that would find nothing (the
                # codec's fields are read directly, this is the per-request hot path)
                if codec._pos == len(codec._buf) and not codec._need:
                    break
                if size > _BATCH_BYTES:
                    self._write(out)
                    out = []
                    size = 0
                    if self._paused:
                        return  # the rest stays in the codec until resume_writing
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self._svc.bytes_written += len(data)
            transport.write(data)
        if self._eof:
            transport.close()

    def _write(self, out: list[bytes]) -> None:
        if not out or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        self._svc.bytes_written += len(data)
        self.transport.write(data)


class CacheService(Service):
    name = "cache"

    def __init__(self, config: ServiceConfig, host: HostConfig | None = None) -> None:
        super().__init__(config, host)
        assert isinstance(config, CacheConfig)
        self.cfg = config
        self.started_at = int(time.time())
        self.state = CacheState(
            max_memory_bytes=config.max_memory_bytes,
            max_item_bytes=config.max_item_bytes,
            evictions_enabled=config.evictions,
            started=self.started_at,
        )
        self.mrc = (
            MissRatioCurve(config.mrc_sample_rate, config.mrc_max_keys)
            if config.mrc_sample_rate > 0
            else None
        )
        self.hotkeys = (
            HotKeys(config.hotkeys_capacity, config.hotkeys_sample)
            if config.hotkeys_capacity > 0
            else None
        )
        self.engine = Engine(
            self.state,
            server_stats=self._server_stats,
            settings=self._settings,
            mrc=self.mrc,
            hotkeys=self.hotkeys,
            conns_stats=self._conns_stats,
            flush_enabled=config.flush_enabled,
        )
        self.conns: set[CacheProtocol] = set()
        self.dumping: CacheProtocol | None = None  # the connection running a metadump
        self.now = int(time.time())  # one shared int per second: items stamped alike share it
        self.bytes_read = 0
        self.bytes_written = 0
        self.listener: TcpListener | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._register_stats()

    def clock(self) -> int:
        """Unix time in whole seconds (memcached's current_time is per second too)."""
        t = int(time.time())
        if t != self.now:
            self.now = t
        return self.now

    def _tick(self) -> None:
        """Like memcached's clock_handler: ``now`` is refreshed by a timer, once a second (just
        after each whole second), so the request path reads an attribute, not the clock."""
        self.clock()
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_later(1.0005 - time.time() % 1.0, self._tick)

    async def start(self) -> None:
        self.listener = await self.listen_tcp(
            self.cfg.listen,
            lambda: CacheProtocol(self),
            name="listen",
            max_connections=self.cfg.max_connections,
            on_reject=_reject,
        )
        self._tick()
        self.spawn(self._expiry_loop(), name="expiry")
        if self.cfg.idle_timeout > 0:
            self.spawn(self._idle_loop(), name="idle")
        self.log.info("cache listening on %s", self.listener.address)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _expiry_loop(self) -> None:
        """Memcached's LRU crawler, simplified: every ``expiry_interval`` check a slice of a key
        snapshot, sized so that a full pass over all keys takes about a minute (CPU stays a
        fraction of a percent even with millions of items), yielding every 2000 keys."""
        snapshot: list[bytes] = []
        pos = 0
        interval = self.cfg.expiry_interval
        while True:
            await asyncio.sleep(interval)
            if pos >= len(snapshot):
                snapshot = list(self.state.items)
                pos = 0
            budget = max(2000, int(len(snapshot) * interval / _FULL_SWEEP_SECONDS))
            end = min(len(snapshot), pos + budget)
            while pos < end:
                step = min(end, pos + 2000)
                self.state.reap(snapshot[pos:step], self.now)
                pos = step
                await asyncio.sleep(0)
            if pos >= len(snapshot):
                snapshot = []  # release the snapshot between passes

    async def _idle_loop(self) -> None:
        timeout = self.cfg.idle_timeout
        while True:
            await asyncio.sleep(min(timeout / 2, 1.0))
            limit = self.clock() - timeout
            for conn in list(self.conns):
                if conn.last_active < limit and conn.transport is not None:
                    conn.transport.close()

    def _settings(self) -> list[tuple[str, object]]:
        """``stats settings`` in memcached 1.6.18's order; extstore and TLS keys left out."""
        c = self.cfg
        st = self.state
        oldest = 0
        if st.items:
            oldest = max(0, self.clock() - next(iter(st.items.values())).time)
        return [
            ("maxbytes", st.max_memory_bytes),
            ("maxconns", c.max_connections),
            ("tcpport", self.listener.address.port if self.listener else c.listen.port),
            ("udpport", 0),
            ("inter", c.listen.host),
            ("verbosity", self.engine.verbosity),
            ("oldest", oldest),
            ("evictions", "on" if c.evictions else "off"),
            ("domain_socket", "NULL"),
            ("umask", 700),
            ("shutdown_command", "no"),
            ("growth_factor", "1.25"),
            ("chunk_size", 48),
            ("num_threads", 1),
            ("num_threads_per_udp", 1),
            ("stat_key_prefix", ":"),
            ("detail_enabled", "no"),
            ("reqs_per_event", 20),
            ("cas_enabled", "yes"),
            ("tcp_backlog", 1024),
            ("binding_protocol", "ascii"),
            ("auth_enabled_sasl", "no"),
            ("auth_enabled_ascii", "no"),
            ("item_size_max", c.max_item_bytes),
            ("maxconns_fast", "yes"),
            ("hashpower_init", 0),
            ("slab_reassign", "no"),
            ("slab_automove", 0),
            ("slab_automove_ratio", "0.00"),
            ("slab_automove_window", 0),
            ("slab_chunk_max", c.max_item_bytes // 2),
            ("lru_crawler", "yes"),
            ("lru_crawler_sleep", 0),
            ("lru_crawler_tocrawl", 0),
            ("tail_repair_time", 0),
            ("flush_enabled", "yes" if c.flush_enabled else "no"),
            ("dump_enabled", "no"),
            ("hash_algorithm", "python-dict"),
            ("lru_maintainer_thread", "no"),
            ("lru_segmented", "no"),
            ("hot_lru_pct", 0),
            ("warm_lru_pct", 0),
            ("hot_max_factor", "0.00"),
            ("warm_max_factor", "0.00"),
            ("temp_lru", "no"),
            ("temporary_ttl", 0),
            ("idle_timeout", int(c.idle_timeout)),
            ("watcher_logbuf_size", 0),
            ("worker_logbuf_size", 0),
            ("read_buf_mem_limit", 0),
            ("track_sizes", "no"),
            ("inline_ascii_response", "no"),
            ("mrc_sample_rate", c.mrc_sample_rate),
            ("hotkeys_capacity", c.hotkeys_capacity),
        ]

    def _server_stats(self) -> list[tuple[str, object]]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        lst = self.listener
        counters = lst.counters() if lst is not None else {}
        return [
            ("rusage_user", f"{ru.ru_utime:.6f}"),
            ("rusage_system", f"{ru.ru_stime:.6f}"),
            ("max_connections", self.cfg.max_connections),
            ("curr_connections", counters.get("curr_connections", 0)),
            ("total_connections", counters.get("total_connections", 0)),
            ("rejected_connections", counters.get("rejected_connections", 0)),
            ("connection_structures", counters.get("curr_connections", 0)),
            ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written),
            ("accepting_conns", 1 if lst is not None and lst.accepting else 0),
            ("listen_disabled_num", counters.get("listen_disabled_num", 0)),
        ]

    def _conns_stats(self) -> list[tuple[str, object]]:
        """memcached's ``stats conns``: one block per connection, keyed by its fd."""
        lines: list[tuple[str, object]] = []
        now = self.clock()
        if self.listener is not None:
            fd = -1
            lines.append((f"{fd}:addr", f"tcp:{self.listener.address}"))
            lines.append((f"{fd}:state", "conn_listening"))
        for conn in sorted(self.conns, key=lambda c: c.fd):
            t = conn.transport
            peer = t.get_extra_info("peername") if t is not None else None
            sock = t.get_extra_info("sockname") if t is not None else None
            if peer is None or sock is None:
                continue
            lines.append((f"{conn.fd}:addr", f"tcp:{peer[0]}:{peer[1]}"))
            lines.append((f"{conn.fd}:listen_addr", f"tcp:{sock[0]}:{sock[1]}"))
            lines.append((f"{conn.fd}:state", "conn_mwrite" if conn._paused else "conn_waiting"))
            lines.append((f"{conn.fd}:secs_since_last_cmd", now - conn.last_active))
        return lines

    def _register_stats(self) -> None:
        st = self.state
        for name in _STATE_COUNTERS:
            self.stats.gauge(name, _getter(st, name), help=f"memcached {name}")
        self.stats.gauge("curr_items", lambda: len(st.items), help="items stored now")
        self.stats.gauge("limit_maxbytes", lambda: st.max_memory_bytes, help="memory limit")
        self.stats.gauge("bytes_read", lambda: self.bytes_read, help="bytes received")
        self.stats.gauge("bytes_written", lambda: self.bytes_written, help="bytes sent")
        for key in ("curr_connections", "total_connections", "rejected_connections",
                    "listen_disabled_num"):  # fmt: skip
            self.stats.gauge(key, self._listener_getter(key), help=f"memcached {key}")

    def _listener_getter(self, key: str) -> Callable[[], int]:
        def get() -> int:
            return self.listener.counters()[key] if self.listener is not None else 0

        return get

    def admin_routes(self) -> list[web.RouteDef]:
        return [web.get("/mrc", self._admin_mrc), web.get("/hotkeys", self._admin_hotkeys)]

    async def _admin_mrc(self, request: web.Request) -> web.Response:
        """The live miss-ratio curve as JSON: what `hastack cache size-estimate` reads."""
        if self.mrc is None:
            return web.json_response({"error": "mrc disabled (mrc_sample_rate = 0)"}, status=404)
        st = self.state
        per_item = st.bytes / len(st.items) if st.items else 0.0
        lines = dict(self.mrc.stats_lines(per_item))
        points = [
            {"items": float(k.split(":", 1)[1]), "bytes": float(k.split(":", 1)[1]) * per_item,
             "miss_ratio": float(str(v))}
            for k, v in lines.items() if k.startswith("mrc:")
        ]  # fmt: skip
        return web.json_response(
            {"sample_rate": self.mrc.rate, "accesses": self.mrc.accesses,
             "bytes_per_item": per_item, "points": points}
        )  # fmt: skip

    async def _admin_hotkeys(self, request: web.Request) -> web.Response:
        if self.hotkeys is None:
            return web.json_response({"error": "hot keys disabled"}, status=404)
        top = self.hotkeys.top(int(request.query.get("n", "10")))
        return web.json_response(
            [{"key": k.decode("latin-1"), "count": c, "error": e} for k, c, e in top]
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the listener accepts clients."""
        accepting = self.listener is not None and self.listener.accepting
        return accepting, {
            "accepting": accepting,
            "curr_connections": len(self.conns),
            "curr_items": len(self.state.items),
            "bytes": self.state.bytes,
            "limit_maxbytes": self.state.max_memory_bytes,
        }


def _reject(sock: socket.socket) -> None:
    """memcached with maxconns_fast (the 1.6 default): tell the client, then close."""
    sock.setblocking(False)
    try:
        sock.send(proto.TOO_MANY_CONNECTIONS)
    except BlockingIOError:
        pass  # the kernel buffer of a brand-new socket is empty; nothing to wait for
