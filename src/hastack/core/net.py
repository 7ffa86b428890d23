"""TCP and UDP serving shared by every service.

``TcpListener`` runs its own accept loop instead of ``loop.create_server`` so that it can
enforce a connection limit the way memcached's ``-c`` does (either reject over-limit
connections with a message, or stop accepting until a slot frees: ``listen_disabled_num``)
and back off on accept errors such as EMFILE instead of spinning.

Connections are asyncio Protocols (the fast path: no StreamReader per byte) or, for code that
reads better as a coroutine, stream handlers. Either way the listener tracks them, so a
graceful shutdown can ask each to finish what it is doing and then wait, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import Any

from hastack.config import Address

log = logging.getLogger("hastack.core.net")

# Accept errors that mean "out of a resource, try again later" (accept(2)); asyncio's own
# server sleeps one second on these. We back off from 10 ms to 1 s.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_BACKOFF_MIN = 0.01
_BACKOFF_MAX = 1.0


class ConnectionProtocol(asyncio.Protocol):
    """Base of every Protocol a TcpListener serves.

    Subclasses that override ``connection_made`` or ``connection_lost`` must call ``super()``.
    Override ``graceful_close`` to finish the request in flight before closing.
    """

    transport: asyncio.Transport | None = None
    _listener: TcpListener | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener._release(self)

    def graceful_close(self) -> None:
        """Called once on shutdown. Default: flush what is queued and close."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class StreamConnection(ConnectionProtocol):
    """Adapts a ``handler(reader, writer)`` coroutine to the listener's tracking."""

    def __init__(self, handler: StreamHandler, limit: int = 64 * 1024) -> None:
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=limit, loop=loop)
        self._inner = asyncio.StreamReaderProtocol(self._reader, loop=loop)
        self._handler = handler
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._inner.connection_made(transport)
        writer = asyncio.StreamWriter(
            transport,  # type: ignore[arg-type]
            self._inner,
            self._reader,
            asyncio.get_running_loop(),
        )
        self._task = asyncio.create_task(self._run(writer))

    async def _run(self, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handler(self._reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away; nothing to report
        except Exception:
            log.exception("connection handler failed")
        finally:
            writer.close()

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        super().connection_lost(exc)

    def graceful_close(self) -> None:
        # The handler sees EOF after what is already buffered, finishes, and closes.
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
        self._reader.feed_eof()


def bind_tcp(address: Address, backlog: int = 1024, reuse_port: bool = False) -> socket.socket:
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _sock_address(sock: socket.socket) -> Address:
    name = sock.getsockname()
    return Address(name[0], name[1])


class TcpListener:
    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], ConnectionProtocol],
        *,
        name: str = "listen",
        max_connections: int = 1024,
        on_reject: Callable[[socket.socket], None] | None = None,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float = 30.0,
    ) -> None:
        self.name = name
        # TLS (e.g. syslog over RFC 5425): the handshake runs after accept, inside the slot,
        # so TLS clients count against max_connections like any other.
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self.address = _sock_address(sock)
        self.max_connections = max_connections
        self._sock = sock
        self._factory = protocol_factory
        self._on_reject = on_reject
        self._live: set[ConnectionProtocol] = set()
        self._slot_free = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._task: asyncio.Task[None] | None = None
        self.accepted = 0
        self.rejected = 0
        self.listen_disabled_num = 0
        self.accept_errors = 0
        self.accepting = False

    @property
    def connections(self) -> int:
        return len(self._live)

    def start(self) -> None:
        self.accepting = True
        self._task = asyncio.create_task(self._accept_loop(), name=f"accept {self.address}")

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _BACKOFF_MIN
        while self.accepting:
            if self._on_reject is None and len(self._live) >= self.max_connections:
                # memcached's maxconns behaviour without maxconns_fast: stop accepting; the
                # kernel backlog holds new clients until a connection closes.
                self.listen_disabled_num += 1
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:
                if not self.accepting:
                    return
                if exc.errno in _RESOURCE_ERRORS:
                    self.accept_errors += 1
                    log.warning(
                        "%s: accept failed (%s); retrying in %.2fs", self.name, exc, backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                # ECONNABORTED and friends: that one client is gone, keep accepting.
                self.accept_errors += 1
                continue
            backoff = _BACKOFF_MIN
            if len(self._live) >= self.max_connections:
                self.rejected += 1
                try:
                    if self._on_reject is not None:
                        self._on_reject(conn)
                except OSError:
                    pass  # the rejected client already left
                finally:
                    conn.close()
                continue
            self._attach(loop, conn)

    def _attach(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        protocol = self._factory()
        protocol._listener = self
        self._live.add(protocol)
        self._all_closed.clear()
        self.accepted += 1

        def attach_failed(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                self._release(protocol)
                conn.close()

        if self._ssl is None:
            attach = loop.connect_accepted_socket(lambda: protocol, conn)
        else:
            attach = loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        fut = asyncio.ensure_future(attach)
        fut.add_done_callback(attach_failed)

    def _release(self, protocol: ConnectionProtocol) -> None:
        self._live.discard(protocol)
        self._slot_free.set()
        if not self._live:
            self._all_closed.set()

    def stop_accepting(self) -> None:
        """Close the listening socket; live connections continue."""
        if not self.accepting:
            return
        self.accepting = False
        if self._task is not None:
            self._task.cancel()
        self._sock.close()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, ask each connection to finish, wait up to ``timeout``, abort the rest."""
        self.stop_accepting()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for protocol in list(self._live):
            protocol.graceful_close()
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            log.warning("%s: %d connections still open; aborting", self.name, len(self._live))
            for protocol in list(self._live):
                protocol.abort()
            for protocol in list(self._live):
                self._release(protocol)

    def counters(self) -> dict[str, int]:
        return {
            "curr_connections": len(self._live),
            "total_connections": self.accepted,
            "rejected_connections": self.rejected,
            "listen_disabled_num": self.listen_disabled_num,
            "accept_errors": self.accept_errors,
        }


async def serve_tcp(
    address: Address,
    protocol_factory: Callable[[], ConnectionProtocol],
    *,
    name: str = "listen",
    max_connections: int = 1024,
    on_reject: Callable[[socket.socket], None] | None = None,
    backlog: int = 1024,
    reuse_port: bool = False,
    ssl: SSLContext | None = None,
) -> TcpListener:
    sock = bind_tcp(address, backlog, reuse_port)
    listener = TcpListener(
        sock,
        protocol_factory,
        name=name,
        max_connections=max_connections,
        on_reject=on_reject,
        ssl=ssl,
    )
    listener.start()
    return listener


class UdpListener:
    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: asyncio.DatagramProtocol, name: str
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.name = name
        sock = transport.get_extra_info("socket")
        name_ = transport.get_extra_info("sockname")
        self.address = Address(name_[0], name_[1])
        self.rcvbuf_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if sock else 0

    def close(self) -> None:
        self.transport.close()


async def serve_udp(
    address: Address,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    *,
    name: str = "udp",
    rcvbuf_bytes: int | None = None,
    reuse_port: bool = False,
    broadcast: bool = False,
) -> UdpListener:
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if rcvbuf_bytes:
            set_rcvbuf(sock, rcvbuf_bytes)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
    return UdpListener(transport, protocol, name)


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes; as root, beyond net.core.rmem_max.

    Returns what the kernel granted (Linux reports double the request: bookkeeping overhead).
    """
    so_rcvbufforce = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, so_rcvbufforce, size)
    except OSError:  # not privileged: capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
