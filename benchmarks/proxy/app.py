"""The benchmark's application backend: raw asyncio (+ uvloop), one process.

    GET /file/<size>/<n>   200, empty body, X-REPROXY-URL: http://127.0.0.1:P1/<size>/<n%16>.bin
                           http://127.0.0.1:P2/<size>/<n%16>.bin (Perlbal/hastack reproxy)
    GET /accel/<size>/<n>  200, empty body, X-Accel-Redirect: /_reproxy/<size>/<n%16>.bin (nginx)
    GET /bad/<size>/<n>    like /file but the first URL is BAD (a black-holed storage port)
    GET /miss/<size>/<n>   like /file but the first URL names a file storage does not have (404)
    GET /plain             200 with a 1 KiB body (plain proxying)

Usage: python -m benchmarks.proxy.app PORT STORAGE_PORT1 STORAGE_PORT2 [BAD_PORT]
"""

from __future__ import annotations

import asyncio
import sys

BODY_1K = b"x" * 1024


class App(asyncio.Protocol):
    def __init__(self, p1: int, p2: int, bad: int) -> None:
        self.p1, self.p2, self.bad = p1, p2, bad
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            target = head.split(b" ", 2)[1]
            parts = target.split(b"/")
            close = b"\r\nconnection: close" in head.lower()
            if target == b"/plain":
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n"
                    + BODY_1K
                )
            elif len(parts) == 4 and parts[1] in (b"file", b"accel", b"bad", b"miss"):
                size, n = parts[2], int(parts[3]) % 16
                if parts[1] == b"accel":
                    hdr = b"X-Accel-Redirect: /_reproxy/%s/%d.bin\r\n" % (size, n)
                else:
                    first = self.bad if parts[1] == b"bad" else self.p1
                    fsize = b"missing" if parts[1] == b"miss" else size
                    hdr = b"X-REPROXY-URL: http://127.0.0.1:%d/%s/%d.bin http://127.0.0.1:%d/%s/%d.bin\r\n" % (  # noqa: E501
                        first, fsize, n, self.p2, size, n
                    )
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    + hdr
                    + b"Content-Length: 0\r\n\r\n"
                )
            else:
                out.append(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            if close:
                assert self.transport is not None
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def main(port: int, p1: int, p2: int, bad: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: App(p1, p2, bad), "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    args = [int(a) for a in sys.argv[1:]]
    if len(args) == 3:
        args.append(1)
    asyncio.run(main(*args))
