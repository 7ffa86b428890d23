"""`hastack cache size-estimate` and `hastack cache hotkeys` against a live in-process cache."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from hastack.cache.config import CacheConfig
from hastack.cache.server import CacheService
from hastack.config import Address
from hastack.testing import running_service


async def zipf_traffic(port: int, n: int = 6000) -> None:
    rng = random.Random(3)
    keys = [b"page:%d" % i for i in range(2000)]
    weights = [1 / (i + 1) for i in range(len(keys))]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    batch = []
    for key in rng.choices(keys, weights, k=n):
        batch.append(b"get " + key + b"\r\n")
        batch.append(b"set " + key + b" 0 0 100 noreply\r\n" + b"v" * 100 + b"\r\n")
    writer.write(b"".join(batch) + b"mn\r\n")
    received = b""
    while not received.endswith(b"MN\r\n"):
        chunk = await asyncio.wait_for(reader.read(1 << 20), 60)
        assert chunk
        received = received[-8:] + chunk
    writer.close()


async def run_cli(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hastack.cli", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_size_estimate_prints_table_and_writes_png(tmp_path: Path) -> None:
    cfg = CacheConfig(listen=Address("127.0.0.1", 0), mrc_sample_rate=1.0)
    async with running_service(CacheService, cfg) as svc:
        assert svc.listener is not None
        addr = str(svc.listener.address)
        await zipf_traffic(svc.listener.address.port)
        png = tmp_path / "curve.png"
        code, out = await run_cli("cache", "size-estimate", addr, "--png", str(png))
        assert code == 0, out
        assert "hit ratio" in out and "memory (MB)" in out
        table = out.split("hit ratio\n", 1)[1].split("curve written")[0]
        rows = [line.split() for line in table.splitlines() if line.strip()]
        hits = [float(r[1]) for r in rows]
        assert hits == sorted(hits), out  # more memory never estimates fewer hits
        assert 0.0 <= hits[0] <= hits[-1] <= 1.0
        # the estimate at the memory in use matches the hit ratio the server observed
        observed = float(out.split("observed hit ratio ")[1].split()[0])
        assert abs(hits[-1] - observed) < 0.02
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        code, out = await run_cli("cache", "hotkeys", addr)
        assert code == 0, out
        assert "page:0" in out  # the most popular key of the Zipf workload
