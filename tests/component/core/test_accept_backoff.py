"""Out of file descriptors: the accept loop backs off instead of spinning, then recovers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, resource, socket
    from hastack.config import Address
    from hastack.core.net import ConnectionProtocol, serve_tcp

    async def main():
        listener = await serve_tcp(Address("127.0.0.1", 0), ConnectionProtocol)
        loop = asyncio.get_running_loop()
        clients = []
        for _ in range(2):  # client sockets live in this process too: make them first
            s = socket.socket()
            s.setblocking(False)
            clients.append(s)
        # Leave room for exactly one more descriptor (listdir's own fd is gone again).
        used = len(os.listdir("/proc/self/fd")) - 1
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 1, hard))
        for s in clients[:1]:
            await loop.sock_connect(s, tuple(listener.address))
        async with asyncio.timeout(10):
            while listener.accepted < 1:
                await asyncio.sleep(0.01)
        # No descriptor left: the next accept fails with EMFILE and is retried with backoff.
        await loop.sock_connect(clients[1], tuple(listener.address))
        async with asyncio.timeout(10):
            while listener.accept_errors < 2:
                await asyncio.sleep(0.01)
        errors_after = listener.accept_errors
        await asyncio.sleep(0.3)
        # Backing off (10 ms doubling to 1 s) means a handful of retries, not thousands.
        assert listener.accept_errors - errors_after < 10, listener.accept_errors
        # Free a descriptor: the waiting client gets accepted.
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        async with asyncio.timeout(10):
            while listener.accepted < 2:
                await asyncio.sleep(0.01)
        print("accepted", listener.accepted, "errors", listener.accept_errors)

    asyncio.run(main())
    """
)


def test_accept_backs_off_on_emfile_and_recovers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accepted 2 errors ")
