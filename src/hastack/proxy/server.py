"""The proxy service: listeners ("fronts"), request routing, proxying, reproxy, static files.

One ``ClientConnection`` (an asyncio Protocol, no web framework) per client connection runs one
coroutine that reads request heads in order (pipelined requests wait in the parser's buffer),
handles each to completion, and keeps the connection alive when both sides allow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from hastack.config import Address, HostConfig, ServiceConfig, load_config
from hastack.core.service import Service
from hastack.errors import ProtocolError
from hastack.proxy import reproxy, static
from hastack.proxy.config import (
    BackendConfig,
    ListenerConfig,
    PoolConfig,
    ProxyConfig,
    RouteConfig,
)
from hastack.proxy.health import HealthChecker
from hastack.proxy.http import HttpDate, HTTPProtocol, UpstreamConnection
from hastack.proxy.pool import BackendPool, PoolUnavailable
from hastack.proxy.proto import (
    NEED_DATA,
    Data,
    EndOfMessage,
    HTTPConnection,
    Request,
    Response,
    error_response,
    reason_phrase,
)
from hastack.proxy.state import BackendState

# Hop-by-hop headers (RFC 9110 7.6.1) plus the framing headers the proxy sets itself.
HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
        b"proxy-authorization",
    }
)
REPROXY_HEADERS = frozenset(
    {
        b"x-reproxy-url",
        b"x-reproxy-file",
        b"x-reproxy-expected-size",
        b"x-reproxy-cache-for",
        b"x-accel-redirect",
    }
)
LINGER_TIMEOUT = 2.0  # nginx lingering_time is 30 s; the answer is already out by then
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_5XX_EJECT = frozenset({500, 502, 503, 504})


class ClientError(Exception):
    """The client's request body was malformed: answer with ``error.reply`` and close."""

    def __init__(self, error: ProtocolError) -> None:
        super().__init__(str(error))
        self.error = error


class ResponseStarted(Exception):
    """A failure after the response head went out: the only honest thing left is to close."""


class Route:
    __slots__ = ("config", "host", "internal", "pool", "prefix", "root_real", "strip", "wildcard")

    def __init__(self, rc: RouteConfig) -> None:
        self.config = rc
        h = rc.host.lower() if rc.host else None
        self.wildcard = h is not None and h.startswith("*.")
        self.host = h[1:].encode() if self.wildcard and h else (h.encode() if h else None)
        self.prefix = rc.path_prefix.encode()
        self.pool = rc.pool
        self.root_real = static.resolve_root(rc.static_root) if rc.static_root else None
        self.strip = rc.strip_prefix
        self.internal = rc.internal

    def matches(self, host: bytes, path: bytes) -> bool:
        if self.host is not None:
            if self.wildcard:
                if not host.endswith(self.host):
                    return False
            elif host != self.host:
                return False
        return path.startswith(self.prefix)


class Front:
    """One listener's settings, routes and shared per-listener state."""

    def __init__(self, service: ProxyService, name: str, config: ListenerConfig) -> None:
        self.service = service
        self.name = name
        self.date = HttpDate()
        self.storage = reproxy.StorageClient(
            config.reproxy_connect_timeout,
            config.reproxy_response_timeout,
            config.reproxy_dead_interval,
            config.reproxy_max_idle_per_host,
            config.reproxy_idle_timeout,
            config.max_buffer_bytes,
        )
        self.cache = reproxy.ReproxyCache(config.reproxy_cache_max_entries)
        self.connections: set[ClientConnection] = set()
        self.configure(config)
        st = service.stats
        p = f"{name}_"
        self.c_requests = st.counter(p + "requests", help="requests received")
        self.c_proxied = st.counter(p + "proxied", help="requests sent to a pool")
        self.c_static = st.counter(p + "static", help="static file responses")
        self.c_reproxy = st.counter(p + "reproxied", help="X-REPROXY-URL responses served")
        self.c_reproxy_file = st.counter(p + "reproxy_file", help="X-REPROXY-FILE responses")
        self.c_reproxy_fail = st.counter(p + "reproxy_all_failed", help="503: every URL failed")
        self.c_reproxy_cache = st.counter(p + "reproxy_cache_hits", help="cache hits")
        self.c_accel = st.counter(p + "accel_redirects", help="X-Accel-Redirect responses")
        self.c_retries = st.counter(p + "retries", help="idempotent requests retried")
        self.c_errors = st.counter(p + "errors", help="4xx/5xx generated by the proxy")
        self.c_bad = st.counter(p + "bad_requests", help="malformed requests (400/413/414/431)")
        st.gauge(p + "connections", lambda: len(self.connections), help="open client connections")

    def configure(self, config: ListenerConfig) -> None:
        self.config = config
        routes = [Route(r) for r in config.routes]
        self.routes = [r for r in routes if not r.internal]
        self.internal_routes = [r for r in routes if r.internal]
        self.default_pool = config.pool
        self.default_root = static.resolve_root(config.static_root) if config.static_root else None
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in config.trusted_proxies]
        self.server_header = b"Server: hastack\r\n" if config.server_tokens else b""

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def is_trusted(self, ip: str | None) -> bool:
        if self.config.always_trusted:
            return True
        if ip is None or not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def route(
        self, host: bytes, path: bytes, internal: bool = False
    ) -> tuple[str | None, str | None, Route | None]:
        """(pool name, static root, route) for this request."""
        for r in self.internal_routes if internal else self.routes:
            if r.matches(host, path):
                return r.pool, r.root_real, r
        if internal:
            return None, None, None
        return self.default_pool, self.default_root, None

    # -- responses made here -----------------------------------------------------------------

    def simple_response(
        self,
        status: int,
        body: bytes = b"",
        keep_alive: bool = True,
        head_only: bool = False,
        extra: bytes = b"",
        content_type: bytes = b"text/plain",
        http10: bool = False,
    ) -> bytes:
        if not body and status >= 400:
            body = reason_phrase(status) + b"\n"
        head = b"HTTP/1.1 %d %s\r\nDate: %s\r\n%sContent-Length: %d\r\n" % (
            status,
            reason_phrase(status),
            self.date(),
            self.server_header,
            len(body),
        )
        if body:
            head += b"Content-Type: " + content_type + b"\r\n"
        if not keep_alive:
            head += b"Connection: close\r\n"
        elif http10:
            head += b"Connection: keep-alive\r\n"
        head += extra + b"\r\n"
        return head if head_only else head + body


def _split_target(target: bytes) -> tuple[bytes | None, bytes, bytes]:
    """(host from absolute-form or None, path, query including '?')."""
    host = None
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        rest = target.split(b"://", 1)[1]
        host, slash, rest = rest.partition(b"/")
        target = slash + rest if slash else b"/"
    path, q, query = target.partition(b"?")
    return host, path, (q + query)


def _host_only(host: bytes) -> bytes:
    host = host.strip().lower()
    if host.startswith(b"["):
        return host.split(b"]", 1)[0] + b"]"
    return host.split(b":", 1)[0]


class ClientConnection(HTTPProtocol):
    """One client connection: reads requests in order and answers them."""

    def __init__(self, front: Front) -> None:
        cfg = front.config
        super().__init__(
            HTTPConnection(
                "server",
                max_request_line_bytes=cfg.max_request_line_bytes,
                max_header_bytes=cfg.max_header_bytes,
                max_headers=cfg.max_headers,
                max_body_bytes=cfg.max_body_bytes,
            ),
            cfg.max_buffer_bytes,
        )
        self.front = front
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.idle = True
        self.trusted = False
        self.peer_ip: bytes = b""
        self.local_host: bytes = b"localhost"
        self.lingering = False
        self.unread_input = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ip = self.peer[0] if self.peer else None
        self.peer_ip = ip.encode() if ip else b""
        local = transport.get_extra_info("sockname")
        self.local_host = (
            b"%s:%d" % (local[0].encode(), local[1]) if isinstance(local, tuple) else b"localhost"
        )
        self.trusted = self.front.is_trusted(ip)
        self.front.connections.add(self)
        self.task = self.loop.create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.front.connections.discard(self)

    def graceful_close(self) -> None:
        self.closing = True
        if self.idle and not self.parser.buffered and self.transport is not None:
            self.transport.close()

    async def _serve(self) -> None:
        front = self.front
        writes_before = 0
        try:
            while not self.closing:
                self.idle = True
                req = await self._read_head()
                self.idle = False
                if req is None:
                    break
                front.c_requests.value += 1
                writes_before = self.writes
                keep = await front.service.handle(self, req)
                if not keep:
                    break
        except ProtocolError as exc:
            front.c_bad.value += 1
            self.unread_input = True  # the client may still be sending (a 413 body, ...)
            if exc.reply and not self.closed:
                self.write(exc.reply)
        except ClientError as exc:
            front.c_bad.value += 1
            self.unread_input = True
            if exc.error.reply and not self.closed:
                self.write(exc.error.reply)
        except (ConnectionError, TimeoutError, ResponseStarted):
            pass  # the client went away, stalled, or a backend broke mid-response: close
        except asyncio.CancelledError:
            raise
        except Exception:
            front.service.log.exception("%s: request handler failed", front.name)
            if not self.closed and not self.idle and self.writes == writes_before:
                self.write(error_response(500))  # only if no answer has started
        finally:
            if self.transport is not None:
                unread = self.parser.in_body or self.unread_input
                if unread and not self.closed and self.transport.can_write_eof():
                    self._linger()
                else:
                    self.transport.close()

    def _linger(self) -> None:
        """Close after an answer sent before the request body was read (413, 503, errors).

        Closing a socket with unread input makes the kernel send a reset that can destroy the
        answer in flight; like nginx's lingering close, shut down our side, discard what the
        client still sends for a moment, then close.
        """
        assert self.transport is not None
        self.lingering = True
        self.transport.write_eof()
        with contextlib.suppress(RuntimeError):
            self.transport.resume_reading()
        self.loop.call_later(LINGER_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # discarded: the answer is out, we only wait for the client to finish
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.lingering:
            return False  # the client is done too: close now
        return super().eof_received()

    async def _read_head(self) -> Request | None:
        parser = self.parser
        cfg = self.front.config
        started: float | None = None
        while True:
            ev = parser.next_event()
            if ev is not NEED_DATA:
                if isinstance(ev, Request):
                    return ev
                if isinstance(ev, EndOfMessage):
                    continue  # the end of the previous, bodyless request
                return None  # ConnectionClosed (or an unread body: handlers closed already)
            if self.closing:
                return None
            if not parser.buf and started is None:
                timeout = cfg.client_idle_timeout
            else:
                now = self.loop.time()
                if started is None:
                    started = now
                timeout = started + cfg.header_timeout - now
            if self._read_paused:
                self._resume_reading()
            try:
                await self.wait_data(max(timeout, 0.0))
            except TimeoutError:
                if parser.buf and not self.closed:
                    self.write(self.front.simple_response(408, keep_alive=False))
                return None
            if started is None and parser.buf:
                started = self.loop.time()


class ProxyService(Service):
    name = "proxy"

    def __init__(self, config: ServiceConfig, host: HostConfig | None = None) -> None:
        super().__init__(config, host)
        self.config: ProxyConfig = cast(ProxyConfig, config)
        self.pools: dict[str, BackendPool] = {}
        self.fronts: dict[str, Front] = {}
        self.checker = HealthChecker(self)
        self.config_path: Path | None = None
        self.reloads = self.stats.counter("reloads", help="successful config reloads")
        self.started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------------------

    def _add_pool(self, name: str, pc: PoolConfig) -> None:
        self.pools[name] = BackendPool(name, pc)

        def up() -> int:
            pool = self.pools.get(name)
            now = time.monotonic()
            return sum(b.available(now) for b in pool.state.backends) if pool else 0

        def active() -> int:
            pool = self.pools.get(name)
            return sum(b.active for b in pool.state.backends) if pool else 0

        def queued() -> int:
            pool = self.pools.get(name)
            return pool.queued if pool else 0

        def requests() -> int:
            pool = self.pools.get(name)
            return sum(b.requests for b in pool.state.backends) if pool else 0

        st = self.stats
        st.gauge(f"pool_{name}_backends_up", up, help="backends available for new requests")
        st.gauge(f"pool_{name}_active", active, help="requests in flight to the pool")
        st.gauge(f"pool_{name}_queued", queued, help="requests waiting for a backend slot")
        st.gauge(f"pool_{name}_requests", requests, help="responses received from the pool")

    async def start(self) -> None:
        for name, pc in self.config.pools.items():
            self._add_pool(name, pc)
        for name, lc in self.config.listeners.items():
            await self._start_front(name, lc)
        self.checker.start()
        self.spawn(self._sweep(), name="sweep idle connections")

    async def _start_front(self, name: str, lc: ListenerConfig) -> None:
        front = Front(self, name, lc)
        self.fronts[name] = front
        await self.listen_tcp(
            lc.listen, front.protocol, name=name, max_connections=lc.max_connections
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for pool in self.pools.values():
                pool.idle.sweep(now)
            for front in self.fronts.values():
                front.storage.idle.sweep(now)

    async def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        for front in self.fronts.values():
            front.storage.idle.close_all()

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        detail: dict[str, Any] = {}
        ok = True
        for name, pool in self.pools.items():
            up = sum(1 for b in pool.state.backends if b.available(now))
            detail[name] = {"up": up, "total": len(pool.state.backends)}
            if pool.state.backends and up == 0:
                ok = False
        return ok, detail

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, new: ProxyConfig | None = None) -> None:
        """Apply a new config without dropping in-flight requests (SIGHUP)."""
        if new is None:
            path = self.config_path or _config_path_from_argv()
            if path is None:
                self.log.error("reload: config file path unknown")
                return
            try:
                stack = await asyncio.to_thread(load_config, path)
            except Exception as exc:  # a bad file must not take the running proxy down
                self.log.error("reload: %s", exc)
                return
            cfg = stack.services.get("proxy")
            if not isinstance(cfg, ProxyConfig):
                self.log.error("reload: %s has no [proxy] table", path)
                return
            new = cfg
        now = time.monotonic()
        for name, pc in new.pools.items():
            pool = self.pools.get(name)
            if pool is None:
                self._add_pool(name, pc)
                continue
            pool.config = pc
            pool.state.balance = pc.balance
            pool.state.slow_start = pc.health.slow_start_interval
            pool.idle.max_idle = pc.max_idle_per_backend
            pool.idle.idle_timeout = pc.idle_timeout
            keys = {str(b.address) for b in pc.backends}
            for b in list(pool.state.backends):
                if b.key not in keys:
                    pool.remove_backend(b.key)
            for bc in pc.backends:
                pool.add_backend(bc, now)
        for name in [n for n in self.pools if n not in new.pools]:
            self.pools.pop(name).close()
        for name, lc in new.listeners.items():
            front = self.fronts.get(name)
            if front is None:
                await self._start_front(name, lc)
            elif front.config.listen != lc.listen:
                self.log.warning("reload: listener %s address change needs a restart", name)
                front.configure(lc)
            else:
                front.configure(lc)
        object.__setattr__(self, "config", new)
        self.checker.restart()
        self.reloads.value += 1
        self.log.info("reloaded config: %d pools, %d listeners", len(new.pools), len(self.fronts))

    # -- request handling ---------------------------------------------------------------------

    async def handle(self, conn: ClientConnection, req: Request) -> bool:
        front = conn.front
        abs_host, path, _query = _split_target(req.target)
        host_h = abs_host if abs_host is not None else (req.host or b"")
        host = _host_only(host_h)
        if req.version == b"1.1" and not host_h:
            return await self.reply(conn, req, 400, b"missing Host header\n")
        if req.method == b"CONNECT" or (
            req.connection is not None and b"upgrade" in req.connection.lower()
        ):
            return await self.reply(conn, req, 501, b"CONNECT and Upgrade are not supported\n")
        cfg = front.config
        if cfg.enable_reproxy and front.cache.max_entries and req.method in (b"GET", b"HEAD"):
            key = host + b"|" + req.target
            entry = front.cache.get(key, time.monotonic())
            if entry is not None:
                front.cache.hits += 1
                front.c_reproxy_cache.value += 1
                return await self.cached_reproxy(conn, req, entry)
        pool_name, root, route = front.route(host, path)
        if root is not None:
            if route is not None and route.strip:
                path = b"/" + path[len(route.prefix) :].lstrip(b"/")
            return await self.serve_static(conn, req, root, path)
        if pool_name is None or pool_name not in self.pools:
            return await self.reply(conn, req, 404, b"no route\n")
        target = req.target
        if route is not None and route.strip:
            target = b"/" + req.target[len(route.prefix) :].lstrip(b"/")
        elif abs_host is not None:
            target = path + _query
        front.c_proxied.value += 1
        return await self.proxy(conn, req, self.pools[pool_name], target)

    async def reply(
        self,
        conn: ClientConnection,
        req: Request,
        status: int,
        body: bytes = b"",
        extra: bytes = b"",
        content_type: bytes = b"text/plain",
    ) -> bool:
        """Send a generated response; keep the connection only if the request body is consumed."""
        front = conn.front
        if status >= 400:
            front.c_errors.value += 1
        keep = req.keep_alive and not conn.closing and not conn.parser.in_body and status != 400
        if conn.parser.in_body and status != 400:
            # Unread request body: consume a small one, otherwise close after answering.
            keep = req.keep_alive and await self._discard_body(conn, 64 * 1024)
        if not conn.closed:
            conn.write(
                front.simple_response(
                    status,
                    body,
                    keep_alive=keep,
                    head_only=req.method == b"HEAD",
                    extra=extra,
                    content_type=content_type,
                    http10=req.version == b"1.0",
                )
            )
        await conn.drain(front.config.send_timeout)
        return keep

    async def _discard_body(self, conn: ClientConnection, limit: int) -> bool:
        seen = 0
        if conn.parser.in_body and not conn.parser.buffered:
            return False  # nothing sent yet (Expect: 100-continue?): don't wait for it
        try:
            while True:
                ev = await conn.next_event(conn.front.config.body_timeout)
                if isinstance(ev, Data):
                    seen += len(ev.data)
                    if seen > limit:
                        return False
                else:
                    return isinstance(ev, EndOfMessage)
        except (ProtocolError, TimeoutError):
            return False

    # -- proxying -------------------------------------------------------------------------------

    def backend_head(self, conn: ClientConnection, req: Request, target: bytes) -> bytes:
        front = conn.front
        cfg = front.config
        trusted = conn.trusted
        blind = cfg.blind_proxy
        drop: frozenset[bytes] | set[bytes] = HOP
        conn_h = req.connection
        if conn_h is not None:
            drop = HOP | {t.strip().lower() for t in conn_h.split(b",")}
        lines = [b"%s %s HTTP/1.1\r\n" % (req.method, target)]
        xff: bytes | None = None
        proto: bytes | None = None
        if req.version == b"1.0" and req.host is None:
            lines.append(b"Host: " + conn.local_host + b"\r\n")  # HTTP/1.1 needs one
        for k, v in req.headers:
            lk = k.lower()
            if lk in drop:
                continue
            if not blind:
                if lk == b"x-forwarded-for":
                    xff = v if xff is None else xff + b", " + v
                    continue
                if lk == b"x-forwarded-proto":
                    proto = v
                    continue
                if not trusted and (lk == b"x-host" or lk == b"x-forwarded-host"):
                    continue
            if lk == b"x-proxy-capabilities":
                continue
            lines.append(k + b": " + v + b"\r\n")
        if not blind:
            ip = conn.peer_ip
            if trusted and xff:
                lines.append(b"X-Forwarded-For: " + xff + b", " + ip + b"\r\n")
            else:
                lines.append(b"X-Forwarded-For: " + ip + b"\r\n")
            if not (trusted and proto):
                proto = cfg.forwarded_proto.encode()
            lines.append(b"X-Forwarded-Proto: " + proto + b"\r\n")
        if cfg.enable_reproxy:
            lines.append(b"X-Proxy-Capabilities: reproxy-file\r\n")
        if req.chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        elif req.content_length is not None:
            lines.append(b"Content-Length: %d\r\n" % req.content_length)
        lines.append(b"\r\n")
        return b"".join(lines)

    async def forward_body(
        self, conn: ClientConnection, req: Request, up: UpstreamConnection
    ) -> None:
        cfg = conn.front.config
        if req.expect_continue and not conn.parser.buffered:
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunked = req.chunked
        while True:
            try:
                ev = await conn.next_event(cfg.body_timeout)
            except ProtocolError as exc:
                raise ClientError(exc) from None
            if isinstance(ev, Data):
                up.write(b"%x\r\n%s\r\n" % (len(ev.data), ev.data) if chunked else ev.data)
                if up.write_paused:
                    await up.drain(cfg.body_timeout)
            elif isinstance(ev, EndOfMessage):
                if chunked:
                    up.write(b"0\r\n\r\n")
                return
            else:
                raise ConnectionResetError("client closed during the request body")

    async def proxy(
        self,
        conn: ClientConnection,
        req: Request,
        pool: BackendPool,
        target: bytes,
        allow_reproxy: bool = True,
    ) -> bool:
        front = conn.front
        pc = pool.config
        has_body = req.chunked or bool(req.content_length)
        attempts = 1 + (pc.retries if req.method in IDEMPOTENT and not has_body else 0)
        head = self.backend_head(conn, req, target)
        cookie = _cookie(req, pc.affinity_cookie) if pc.affinity_cookie else None
        affinity = cookie.decode("latin-1") if cookie is not None else None
        tried: list[str] = []
        last_status = 502
        attempt = 0
        stale_retry = False  # this pass repeats one that failed on a stale pooled connection
        stale_used = False
        while attempt < attempts:
            if attempt and not stale_retry:
                front.c_retries.value += 1
            stale_retry = False
            attempt += 1
            try:
                b = pool.try_acquire(tried, affinity) or await pool.acquire(tuple(tried), affinity)
            except PoolUnavailable as exc:
                if tried:
                    break
                return await self.reply(
                    conn, req, 503, exc.reason.encode() + b"\n", extra=b"Retry-After: 1\r\n"
                )
            try:
                started = time.monotonic()
                try:
                    up = pool.idle.get(b.key, started) or await pool.connection(
                        b, front.config.max_buffer_bytes
                    )
                except (OSError, TimeoutError) as exc:
                    b.connect_failed(time.monotonic(), pc.health.eject_interval)
                    pool.state_changed()
                    self.log.warning("pool %s: connect %s failed: %r", pool.name, b.key, exc)
                    tried.append(b.key)
                    last_status = 502
                    continue
                up.parser.expect_response(b"HEAD" if req.method == b"HEAD" else req.method)
                up.write(head)
                up.sent_at = started
                waiting = pool.waiting.setdefault(b.key, set())
                waiting.add(up)
                try:
                    if has_body:
                        await self.forward_body(conn, req, up)
                    while True:
                        ev = up.parser.next_event()
                        if ev is NEED_DATA:
                            ev = await up.next_event(pc.response_timeout)
                        if isinstance(ev, Response):
                            if ev.status >= 200:
                                resp = ev
                                break
                            continue  # 100 Continue / 103 Early Hints: ours was already sent
                        raise ConnectionResetError(f"backend closed the connection ({ev!r})")
                except (ProtocolError, ConnectionError, OSError, TimeoutError) as exc:
                    up.abort()
                    timed_out = isinstance(exc, TimeoutError)
                    if up.uses and not timed_out and not has_body and not up.parser.in_body:
                        # A reused keep-alive connection that the backend had already closed:
                        # not the backend's fault. Try again on a fresh connection, once.
                        pool.idle.drop(b.key)
                        if not stale_used:
                            stale_used = stale_retry = True
                            attempt -= 1
                            continue
                    if b.response_error(
                        time.monotonic(), pc.health.error_limit, pc.health.eject_interval
                    ):
                        pool.state_changed()
                    self.log.warning(
                        "pool %s: %s failed before answering: %r", pool.name, b.key, exc
                    )
                    tried.append(b.key)
                    last_status = 504 if timed_out else 502
                    b.record(last_status, time.monotonic() - started)
                    continue
                except (ClientError, asyncio.CancelledError):
                    up.abort()  # a half-sent request must not go back to the pool
                    raise
                finally:
                    waiting.discard(up)
                return await self.relay(conn, req, pool, b, up, resp, started, allow_reproxy)
            finally:
                pool.release(b)
        body = b"backend timed out\n" if last_status == 504 else b"backend failed\n"
        return await self.reply(conn, req, last_status, body)

    async def relay(
        self,
        conn: ClientConnection,
        req: Request,
        pool: BackendPool,
        b: BackendState,
        up: UpstreamConnection,
        resp: Response,
        started: float,
        allow_reproxy: bool,
    ) -> bool:
        front = conn.front
        cfg = front.config
        pc = pool.config
        status = resp.status
        now = time.monotonic()
        b.record(status, now - started)
        if status in _5XX_EJECT:
            if b.response_error(now, pc.health.error_limit, pc.health.eject_interval):
                pool.state_changed()
        else:
            b.response_ok(now)
        # One pass over the headers: reproxy instructions apart, hop-by-hop ones dropped.
        app_headers: list[tuple[bytes, bytes]] = []
        special: dict[bytes, bytes] | None = None
        conn_tokens: set[bytes] | None = None
        for k, v in resp.headers:
            lk = k.lower()
            if lk in HOP:
                if lk == b"connection":
                    conn_tokens = {t.strip().lower() for t in v.split(b",")}
                continue
            if lk in REPROXY_HEADERS:
                if special is None:
                    special = {}
                special[lk] = v
                continue
            app_headers.append((k, v))
        if conn_tokens:
            app_headers = [(k, v) for k, v in app_headers if k.lower() not in conn_tokens]
        if special is not None and allow_reproxy:
            url = special.get(b"x-reproxy-url")
            rfile = special.get(b"x-reproxy-file")
            accel = special.get(b"x-accel-redirect")
            if ((url is not None or rfile is not None) and cfg.enable_reproxy) or (
                accel is not None and cfg.enable_accel_redirect
            ):
                if up.parser._pending_eom and not up.parser.buf:
                    up.parser._pending_eom = False  # the usual empty body: nothing to skip
                    reusable = up.reusable()
                else:
                    reusable = await reproxy.skip_body(up, pc.read_timeout)
                if reusable:
                    pool.put_back(up)
                else:
                    up.close()
                if url is not None and cfg.enable_reproxy:
                    cache_for = special.get(b"x-reproxy-cache-for")
                    exp_s = special.get(b"x-reproxy-expected-size")
                    expected = _int_or_none(exp_s) if exp_s is not None else None
                    if cache_for is not None and front.cache.max_entries:
                        self._cache_urls(front, req, resp, url, cache_for, expected)
                    return await self.reproxy_urls(
                        conn, req, status, app_headers, url, expected
                    )
                if rfile is not None and cfg.enable_reproxy:
                    expected = _int_or_none(special.get(b"x-reproxy-expected-size"))
                    return await self.reproxy_file(conn, req, status, app_headers, rfile, expected)
                assert accel is not None
                return await self.accel_redirect(conn, req, accel)
        out = [k + b": " + v + b"\r\n" for k, v in app_headers]
        # Plain relay.
        keep = req.keep_alive and not conn.closing
        no_body = req.method == b"HEAD" or status in (204, 304) or status < 200
        framing = b""
        chunk_out = False
        if no_body:
            if resp.content_length is not None:
                framing = b"Content-Length: %d\r\n" % resp.content_length
        elif resp.content_length is not None:
            framing = b"Content-Length: %d\r\n" % resp.content_length
        elif req.version == b"1.1":
            framing = b"Transfer-Encoding: chunked\r\n"
            chunk_out = True
        else:
            keep = False
        if pc.affinity_cookie and _cookie(req, pc.affinity_cookie) != b.cid.encode():
            out.append(
                b"Set-Cookie: %s=%s; Path=/; HttpOnly\r\n"
                % (pc.affinity_cookie.encode(), b.cid.encode())
            )
        framing += _conn_header(req, keep)
        head = b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (
            status,
            resp.reason or reason_phrase(status),
            b"".join(out),
            framing,
        )
        ok = await self._stream_body(conn, up, head, chunk_out, pc.read_timeout)
        if ok and up.reusable():
            pool.put_back(up)
        else:
            up.close()
        if not ok:
            raise ResponseStarted()
        return keep

    def _cache_urls(
        self,
        front: Front,
        req: Request,
        resp: Response,
        url: bytes,
        cache_for: bytes,
        expected: int | None,
    ) -> None:
        parsed = reproxy.parse_cache_for(cache_for, resp.headers)
        if parsed is None:
            return
        secs, kept = parsed
        lm = next((v for k, v in kept if k.lower() == b"last-modified"), None)
        host = _host_only(req.host or b"")
        front.cache.put(
            host + b"|" + req.target,
            reproxy.CacheEntry(time.monotonic() + secs, url, kept, lm, expected),
        )

    async def _stream_body(
        self,
        conn: HTTPProtocol,
        up: UpstreamConnection,
        head: bytes,
        chunk_out: bool,
        read_timeout: float,
    ) -> bool:
        """Copy the upstream body to the client after ``head``; False if it broke off."""
        send_timeout = self._send_timeout(conn)
        parser = up.parser
        pending = [head]
        try:
            while True:
                ev = parser.next_event()
                if ev is NEED_DATA:
                    if pending:
                        conn.write(b"".join(pending))
                        pending = []
                        if conn.write_paused:
                            await conn.drain(send_timeout)
                    if conn.closed:
                        return False  # the client left: stop reading the rest
                    ev = await up.next_event(read_timeout)
                if isinstance(ev, Data):
                    if chunk_out:
                        pending.append(b"%x\r\n%s\r\n" % (len(ev.data), ev.data))
                    else:
                        pending.append(ev.data)
                    if len(pending) > 16:
                        conn.write(b"".join(pending))
                        pending = []
                        if conn.write_paused:
                            await conn.drain(send_timeout)
                elif isinstance(ev, EndOfMessage):
                    if chunk_out:
                        pending.append(b"0\r\n\r\n")
                    conn.write(b"".join(pending))
                    if conn.write_paused:
                        await conn.drain(send_timeout)
                    return True
                else:
                    if pending:
                        conn.write(b"".join(pending))
                    return False
        except (ProtocolError, TimeoutError, ConnectionError):
            if pending and not conn.closed:
                conn.write(b"".join(pending))
            return False

    def _send_timeout(self, conn: HTTPProtocol) -> float:
        if isinstance(conn, ClientConnection):
            return conn.front.config.send_timeout
        return 60.0

    # -- reproxy ----------------------------------------------------------------------------------

    async def reproxy_urls(
        self,
        conn: ClientConnection,
        req: Request,
        app_status: int,
        app_headers: list[tuple[bytes, bytes]],
        urls_value: bytes,
        expected: int | None,
    ) -> bool:
        front = conn.front
        storage = front.storage
        urls = storage.parse_urls(urls_value)
        method = b"HEAD" if req.method == b"HEAD" else b"GET"
        client_host = req.host
        client_range = req.header(b"range")
        tried = 0
        now = time.monotonic()
        for host, port, path in storage.order(urls, now):
            if tried:
                storage.fallthroughs += 1
            tried += 1
            try:
                sconn, sresp = await storage.fetch(
                    host, port, path, method, client_host, client_range, expected
                )
            except reproxy.StorageFailure as exc:
                self.log.info("reproxy: %s", exc)
                continue
            front.c_reproxy.value += 1
            return await self._send_reproxied(conn, req, app_status, app_headers, sconn, sresp)
        front.c_reproxy_fail.value += 1
        return await self.reply(conn, req, 503, b"all reproxy URLs failed\n")

    async def _send_reproxied(
        self,
        conn: ClientConnection,
        req: Request,
        app_status: int,
        app_headers: list[tuple[bytes, bytes]],
        sconn: UpstreamConnection,
        sresp: Response,
    ) -> bool:
        front = conn.front
        st = sresp.status
        # Storage's 206/416 wins; otherwise the app's status, with 204 turned into 200.
        status = st if st in (206, 416) else (200 if app_status == 204 else app_status)
        lines = [k + b": " + v + b"\r\n" for k, v in app_headers]
        chunk_out = False
        keep = req.keep_alive and not conn.closing
        if st == 416:
            # Nothing worth relaying in the body (and storage nodes often send it unframed).
            sconn.close()
            cr = sresp.header(b"content-range")
            if cr is not None:
                lines.append(b"Content-Range: " + cr + b"\r\n")
            lines.append(b"Content-Length: 0\r\n")
            lines.append(_conn_header(req, keep))
            conn.write(b"HTTP/1.1 416 %s\r\n%s\r\n" % (reason_phrase(416), b"".join(lines)))
            return keep
        if sresp.content_length is not None:
            lines.append(b"Content-Length: %d\r\n" % sresp.content_length)
        elif req.method == b"HEAD":
            pass
        elif req.version == b"1.1":
            lines.append(b"Transfer-Encoding: chunked\r\n")
            chunk_out = True
        else:
            keep = False
        if st == 206 or st == 416:  # Perlbal copies these two only for partial answers
            for k, v in sresp.headers:
                if len(k) == 13:  # Content-Range and Accept-Ranges are both 13 characters
                    lk = k.lower()
                    if lk == b"content-range" or lk == b"accept-ranges":
                        lines.append(k + b": " + v + b"\r\n")
        lines.append(_conn_header(req, keep))
        head = b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason_phrase(status), b"".join(lines))
        ok = await self._stream_body(
            conn, sconn, head, chunk_out, front.config.reproxy_response_timeout * 10
        )
        if ok:
            front.storage.done(sconn)
        else:
            sconn.close()
            raise ResponseStarted()
        return keep

    async def cached_reproxy(
        self, conn: ClientConnection, req: Request, entry: reproxy.CacheEntry
    ) -> bool:
        ims = req.header(b"if-modified-since")
        lm = entry.last_modified
        # Perlbal: If-Modified-Since (minus IE's "; length=N") equal to the cached Last-Modified.
        if ims is not None and lm is not None and ims.split(b";")[0].strip() == lm:
            extra = b"".join(k + b": " + v + b"\r\n" for k, v in entry.headers)
            return await self.reply(conn, req, 304, extra=extra)
        headers = [(b"Date", conn.front.date()), *entry.headers]
        return await self.reproxy_urls(conn, req, 200, headers, entry.urls, entry.expected_size)

    async def reproxy_file(
        self,
        conn: ClientConnection,
        req: Request,
        app_status: int,
        app_headers: list[tuple[bytes, bytes]],
        path_b: bytes,
        expected: int | None,
    ) -> bool:
        front = conn.front
        real = static.allowed_file(os.fsdecode(path_b.strip()), front.config.reproxy_file_roots)
        if real is None:
            return await self.reply(conn, req, 404, b"reproxy file outside the allowed roots\n")
        sf = static.open_static(real)
        if sf is None or (expected is not None and sf.size != expected):
            if sf is not None:
                os.close(sf.fd)
            return await self.reply(conn, req, 404)
        try:
            front.c_reproxy_file.value += 1
            status = 200 if app_status == 204 else app_status
            keep = req.keep_alive and not conn.closing
            lines = [k + b": " + v + b"\r\n" for k, v in app_headers]
            lines.append(b"Content-Length: %d\r\n" % sf.size)
            lines.append(_conn_header(req, keep))
            conn.write(
                b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason_phrase(status), b"".join(lines))
            )
            if req.method != b"HEAD":
                try:
                    await static.send_file(conn, sf.fd, 0, sf.size, front.config.send_timeout)
                except (ConnectionError, OSError, TimeoutError):
                    raise ResponseStarted() from None
            return keep
        finally:
            os.close(sf.fd)

    async def accel_redirect(self, conn: ClientConnection, req: Request, uri: bytes) -> bool:
        front = conn.front
        front.c_accel.value += 1
        _, path, query = _split_target(uri.strip())
        host = _host_only(req.host or b"")
        pool_name, root, route = front.route(host, path, internal=True)
        if route is None:
            return await self.reply(conn, req, 404, b"no internal location\n")
        if route.strip:
            path = b"/" + path[len(route.prefix) :].lstrip(b"/")
        if root is not None:
            return await self.serve_static(conn, req, root, path)
        assert pool_name is not None
        pool = self.pools.get(pool_name)
        if pool is None:
            return await self.reply(conn, req, 404, b"no internal pool\n")
        sub = Request(
            b"HEAD" if req.method == b"HEAD" else b"GET",
            path + query,
            [(k, v) for k, v in req.headers if k.lower() in (b"host", b"range", b"user-agent")],
            b"1.1",
        )
        sub.keep_alive = req.keep_alive
        sub.host = req.host
        return await self.proxy(conn, sub, pool, path + query, allow_reproxy=False)

    # -- static files -----------------------------------------------------------------------------

    async def serve_static(
        self, conn: ClientConnection, req: Request, root: str, path: bytes
    ) -> bool:
        front = conn.front
        if req.method not in (b"GET", b"HEAD"):
            return await self.reply(conn, req, 405, extra=b"Allow: GET, HEAD\r\n")
        try:
            real = static.safe_path(root, path)
        except static.BadPath as exc:
            return await self.reply(conn, req, exc.status, str(exc).encode() + b"\n")
        sf = static.open_static(real, root)
        if sf is None:
            return await self.reply(conn, req, 404)
        try:
            front.c_static.value += 1
            validators = b"ETag: %s\r\nLast-Modified: %s\r\n" % (sf.etag, sf.last_modified)
            if static.not_modified(
                sf.etag, sf.mtime, req.header(b"if-none-match"), req.header(b"if-modified-since")
            ):
                return await self.reply(conn, req, 304, extra=validators)
            offset, count, status = 0, sf.size, 200
            extra = b"Accept-Ranges: bytes\r\n"
            rng = req.header(b"range")
            if rng is not None and req.method == b"GET":
                if_range = req.header(b"if-range")
                if if_range is None or if_range in (sf.etag, sf.last_modified):
                    r = static.parse_range(rng, sf.size)
                    if r is False:
                        return await self.reply(
                            conn, req, 416, extra=b"Content-Range: bytes */%d\r\n" % sf.size
                        )
                    if isinstance(r, tuple):
                        offset, count, status = r[0], r[1] - r[0] + 1, 206
                        extra += b"Content-Range: bytes %d-%d/%d\r\n" % (r[0], r[1], sf.size)
            keep = req.keep_alive and not conn.closing
            if conn.parser.in_body:
                keep = False
            head = (
                b"HTTP/1.1 %d %s\r\nDate: %s\r\n%sContent-Type: %s\r\n"
                b"Content-Length: %d\r\n%s%s%s\r\n"
            ) % (
                status,
                reason_phrase(status),
                front.date(),
                front.server_header,
                static.content_type(sf.path),
                count,
                validators,
                extra,
                _conn_header(req, keep),
            )
            if req.method == b"HEAD" or count == 0:
                conn.write(head)
                return keep
            if count <= 16384:
                conn.write(head + os.pread(sf.fd, count, offset))
                await conn.drain(front.config.send_timeout)
                return keep
            conn.write(head)
            try:
                await static.send_file(conn, sf.fd, offset, count, front.config.send_timeout)
            except (ConnectionError, OSError, TimeoutError):
                raise ResponseStarted() from None
            return keep
        finally:
            os.close(sf.fd)

    # -- management -------------------------------------------------------------------------------

    def admin_routes(self) -> list[web.RouteDef]:
        from hastack.proxy.admin import routes

        return routes(self)

    def pool_stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {name: pool.snapshot(now) for name, pool in self.pools.items()}

    def add_backend(
        self, pool_name: str, address: str, weight: int = 1, max_conns: int = 0
    ) -> None:
        pool = self.pools[pool_name]
        pool.add_backend(
            BackendConfig(address=Address.parse(address), weight=weight, max_connections=max_conns),
            time.monotonic(),
        )
        self.checker.restart()


def _conn_header(req: Request, keep: bool) -> bytes:
    """Connection header for our answer: HTTP/1.0 clients need keep-alive spelled out."""
    if not keep:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if req.version == b"1.0" else b""


def _cookie(req: Request, name: str) -> bytes | None:
    want = name.encode() + b"="
    for k, v in req.headers:
        if k.lower() == b"cookie":
            for part in v.split(b";"):
                part = part.strip()
                if part.startswith(want):
                    return part[len(want) :]
    return None


def _int_or_none(v: bytes | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v.strip())
    except ValueError:
        return None


def _config_path_from_argv() -> Path | None:
    """`hastack run proxy --config FILE`: the core does not hand services their file path."""
    argv = sys.argv
    for i, a in enumerate(argv):
        if a in ("--config", "-c") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--config="):
            return Path(a.split("=", 1)[1])
    return None
