"""hastack cache vs memcached 1.6.18 (-t 1), side by side, same load generator.

Scenarios:

* ``90/10 get/set``: a pipelined asyncio load generator (uvloop) with 50 connections, each
  keeping 16 requests in flight (a batch of 16, wait for its 16 replies, repeat), 90 % get /
  10 % set, 100-byte values, 10,000 keys (prefilled), for ``--seconds`` per run. Reported:
  ops/s and the server's CPU microseconds per operation (utime+stime from /proc of the server
  pid, so the load generator's own CPU does not count).
* the same with one request in flight per connection (``50x1``): every request costs the
  server a read and a write system call, the worst case for per-request overhead.
* ``memory``: a fresh server, RSS before and after storing ``--items`` 100-byte values under
  12-byte keys (pipelined ``set noreply``), i.e. RSS bytes per stored item. Both servers get
  1 GiB of cache memory so nothing is evicted.
* ``memcslap``: libmemcached's memcslap (blocking, 8 threads; ``--test=set`` and ``get``).

    python -m benchmarks.cache.bench_cache [--runs 5] [--seconds 5] [--items 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Subject, cpu_meter, rss_bytes, run_interleaved, write_report
from hastack.testing import HastackProcess, free_port, write_config

VALUE = b"v" * 100
N_KEYS = 10_000
CONNECTIONS = 50
DEPTH = 16


@dataclass
class Handle:
    name: str
    pid: int
    port: int


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"version\r\n")
                if s.recv(100).startswith(b"VERSION"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextlib.contextmanager
def start_memcached(memory_mb: int = 64) -> Iterator[Handle]:
    port = free_port()
    argv = ["memcached", "-U", "0", "-t", "1", "-m", str(memory_mb), "-l", "127.0.0.1",
            "-p", str(port), "-c", "4096"]  # fmt: skip
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        yield Handle("memcached", proc.pid, port)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def start_hastack(memory_mb: int = 64) -> Iterator[Handle]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        config = write_config(
            Path(tmp),
            f'[hastack]\nname = "bench"\nrun_dir = "{tmp}/run"\ndata_dir = "{tmp}/data"\n'
            'log_level = "warning"\n\n'
            f'[cache]\nlisten = "127.0.0.1:0"\nmax_memory_bytes = {memory_mb * 1024 * 1024}\n'
            "max_connections = 4096\n",
        )
        with HastackProcess(config, "cache") as proc:
            port = int(proc.addresses["listen"].rsplit(":", 1)[1])
            yield Handle("hastack", proc.pid, port)
            proc.stop()


# -- the pipelined load generator ------------------------------------------------------------------
def _requests(rng: random.Random, n: int) -> tuple[bytes, int, int]:
    parts = []
    gets = sets = 0
    for _ in range(n):
        key = b"key:%05d" % rng.randrange(N_KEYS)
        if rng.random() < 0.9:
            parts.append(b"get " + key + b"\r\n")
            gets += 1
        else:
            parts.append(b"set " + key + b" 0 0 100\r\n" + VALUE + b"\r\n")
            sets += 1
    return b"".join(parts), gets, sets


async def _connection(
    port: int, stop_at: float, seed: int, counts: list[int], depth: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(seed)
    batches = [_requests(rng, depth) for _ in range(64)]
    i = 0
    try:
        while time.perf_counter() < stop_at:
            data, gets, sets = batches[i % len(batches)]
            i += 1
            writer.write(data)
            need_end, need_stored = gets, sets
            carry_end = carry_stored = b""
            while need_end > 0 or need_stored > 0:
                chunk = await reader.read(262144)
                if not chunk:
                    raise ConnectionError("server closed")
                # a marker split across reads is counted once: each marker keeps its own
                # carry of len(marker) - 1 bytes, too short to hold a whole marker
                data = carry_end + chunk
                need_end -= data.count(b"END\r\n")
                carry_end = data[-4:]
                data = carry_stored + chunk
                need_stored -= data.count(b"STORED\r\n")
                carry_stored = data[-7:]
            counts[0] += gets + sets
    finally:
        writer.close()


async def _prefill(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"".join(b"set key:%05d 0 0 100 noreply\r\n%b\r\n" % (i, VALUE) for i in range(N_KEYS))
        + b"mn\r\n"
    )
    await reader.readuntil(b"MN\r\n")
    writer.close()


def load(handle: Handle, seconds: float, depth: int = DEPTH) -> dict[str, float]:
    import uvloop

    async def main() -> int:
        await _prefill(handle.port)
        counts = [0]
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _connection(handle.port, stop_at, seed, counts, depth)
                for seed in range(CONNECTIONS)
            )
        )
        return counts[0]

    with cpu_meter(handle.pid) as m:
        ops = uvloop.run(main())
    return {
        "ops_s": ops / m["wall_s"],
        "cpu_us_per_op": m["cpu_s"] * 1e6 / ops,
    }


# -- memory per item ---------------------------------------------------------------------
def fill(port: int, items: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        batch = 5000
        for start in range(0, items, batch):
            s.sendall(
                b"".join(
                    b"set key:%08d 0 0 100 noreply\r\n%b\r\n" % (i, VALUE)
                    for i in range(start, min(items, start + batch))
                )
            )
        s.sendall(b"mn\r\n")
        buf = b""
        while not buf.endswith(b"MN\r\n"):
            buf += s.recv(65536)
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            buf += s.recv(65536)
    m = re.search(rb"STAT curr_items (\d+)", buf)
    assert m is not None and int(m.group(1)) == items, "items were evicted: raise memory"


def memory_run(
    start: Callable[[], contextlib.AbstractContextManager[Handle]], items: int
) -> dict[str, float]:
    with start() as handle:
        time.sleep(0.5)
        before = rss_bytes(handle.pid)
        fill(handle.port, items)
        time.sleep(0.5)
        after = rss_bytes(handle.pid)
    return {"rss_bytes_per_item": (after - before) / items, "rss_mb_after": after / 1048576}


# -- memcslap --------------------------------------------------------------------------
def memcslap(handle: Handle, test: str, per_thread: int = 20000) -> dict[str, float]:
    """memcslap (libmemcached-tools), 8 blocking threads: ops/s of its timed phase."""
    exe = shutil.which("memcslap")
    assert exe is not None
    out = subprocess.run(
        [exe, f"--servers=127.0.0.1:{handle.port}", "--concurrency=8",
         f"--execute-number={per_thread}", f"--test={test}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    found = re.search(r"Time to \w+\s+(\d+) keys by\s+\d+ threads:\s+([\d.]+) seconds", text)
    if found is None:
        raise RuntimeError(f"memcslap output not understood:\n{text}")
    return {"ops_s": int(found.group(1)) / float(found.group(2))}


def _memcslap_run(test: str, handle: Handle) -> dict[str, float]:
    return memcslap(handle, test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--no-memcslap", action="store_true")
    args = ap.parse_args()

    subjects = [Subject("hastack", start_hastack), Subject("memcached", start_memcached)]
    groups = {}
    groups["90/10 get/set, 50x16 pipelined"] = run_interleaved(
        subjects, lambda h: load(h, args.seconds), runs=args.runs, label="load"
    )
    groups["90/10 get/set, 50x1 (no pipelining)"] = run_interleaved(
        subjects, lambda h: load(h, args.seconds, depth=1), runs=args.runs, label="load x1"
    )
    if not args.no_memcslap and shutil.which("memcslap"):
        for test in ("set", "get"):
            groups[f"memcslap --test={test} -c 8"] = run_interleaved(
                subjects, functools.partial(_memcslap_run, test), runs=args.runs, label="memcslap"
            )
    mem: dict[str, list[dict[str, float]]] = {"hastack": [], "memcached": []}
    for i in range(max(1, args.runs // 2 + 1)):
        for name, start in (("hastack", start_hastack), ("memcached", start_memcached)):
            print(f"  memory run {i + 1}: {name} ...", end="", flush=True)
            row = memory_run(functools.partial(start, 1024), args.items)
            mem[name].append(row)
            print(f" {row['rss_bytes_per_item']:.0f} B/item", flush=True)
    groups[f"memory, {args.items:,} x 100 B items"] = mem
    notes = [
        "Targets (issue 3): server CPU per operation at most 1.5x memcached -t 1; RSS per stored",
        "100-byte item at most 2x memcached's.",
        "Load generator: one Python process (uvloop), so ops/s is bounded by the client; compare",
        "server CPU per op. memcslap rows: libmemcached's blocking client, 8 threads, ops/s of its",
        "timed phase only (no CPU figure: its key loading is not separated).",
    ]
    path = write_report(
        "cache",
        "hastack cache vs memcached 1.6.18 (-t 1)",
        groups,
        metrics=["ops_s", "cpu_us_per_op", "rss_bytes_per_item"],
        ratio_to="memcached",
        notes=notes,
        units={"cpu_us_per_op": "µs", "rss_bytes_per_item": "B"},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
