"""Failure benchmark: what clients see when a backend or a storage node breaks under load.

Two app backends behind the front, a closed-loop client (16 keep-alive connections, every request
logged, no silent retries) fetching reproxied 1 KiB files. Cases:

* kill -9 one app backend 2 s into the run;
* SIGSTOP one app backend for 10 s (its port still accepts), then SIGCONT;
* the first X-REPROXY-URL black-holed (a port that accepts and never answers);
* the first X-REPROXY-URL answering 404 (Perlbal measured about -50 % rps there).

Reported per system: requests answered 200, failed requests (an error status, or the connection
closed without an answer), the longest stall (slowest request) and p50. Requests still pending
40 s after the load stops count as failed with a 40 s stall.

    python -m benchmarks.proxy.bench_failure [--seconds 8] [--conns 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Subject, run_interleaved, write_report
from benchmarks.proxy.common import (
    app_backend,
    hastack_front,
    perlbal_available,
    perlbal_front,
    storage_nginx,
)
from hastack.proxy.proto import NEED_DATA, ConnectionClosed, EndOfMessage, HTTPConnection, Response

GRACE = 40.0


@dataclass
class Setup:
    name: str
    pid: int
    port: int
    victim: Any  # the Proc of the app backend that the case breaks


async def _client(
    port: int, path: bytes, stop_at: float, log: list[tuple[float, float, int]]
) -> None:
    loop = asyncio.get_running_loop()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while loop.time() < stop_at:
        t0 = loop.time()
        status = 0
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            parser = HTTPConnection("client")
            parser.expect_response(b"GET")
            writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path)
            done = False
            while not done:
                ev = parser.next_event()
                if ev is NEED_DATA:
                    data = await reader.read(65536)
                    parser.receive_data(data)
                    continue
                if isinstance(ev, Response):
                    status = ev.status
                elif isinstance(ev, EndOfMessage):
                    done = True
                elif isinstance(ev, ConnectionClosed):
                    break
            if not done:
                raise ConnectionResetError("closed without a complete answer")
            if not parser.keep_alive:
                writer.close()
                writer = reader = None
        except Exception:  # every failure (reset, protocol error, ...) is a data point here
            status = 0
            if writer is not None:
                writer.close()
            writer = reader = None
        log.append((t0, loop.time(), status))
    if writer is not None:
        writer.close()


async def _load(port: int, path: bytes, conns: int, seconds: float, fault: Any) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    log: list[tuple[float, float, int]] = []
    start = loop.time()
    stop_at = start + seconds
    tasks = [asyncio.create_task(_client(port, path, stop_at, log)) for _ in range(conns)]
    fault_task = asyncio.create_task(fault())
    _done, pending = await asyncio.wait(tasks, timeout=seconds + GRACE)
    for t in pending:
        t.cancel()
    hung = len(pending)
    with contextlib.suppress(asyncio.CancelledError):
        await fault_task
    lat = [end - t0 for t0, end, _ in log]
    ok = sum(1 for *_, s in log if s == 200)
    failed = sum(1 for *_, s in log if s != 200) + hung
    return {
        "ok": float(ok),
        "failed": float(failed),
        "max_stall_s": max([*lat, GRACE if hung else 0.0]),
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
    }


def _signal_group(proc: Any, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--name", default="proxy-failure")
    ap.add_argument("--cases", default="kill,stop,hole,404", help="which cases to run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4096)  # accepts (the kernel completes handshakes) and never answers
    bad_port = hole.getsockname()[1]
    groups: dict[str, Any] = {}

    with storage_nginx(tmp) as (p1, p2):

        def system(front: str) -> Any:
            @contextlib.contextmanager
            def start() -> Iterator[Setup]:
                with (
                    app_backend(p1, p2, bad_port, name="app1") as a1,
                    app_backend(p1, p2, bad_port, name="app2") as a2,
                ):
                    ctx = (
                        hastack_front(tmp, [a1.port, a2.port])
                        if front == "hastack"
                        else perlbal_front(tmp, [a1.port, a2.port])
                    )
                    with ctx as f:
                        yield Setup(front, f.pid, f.port, a2)

            return start

        subjects = [Subject("hastack", system("hastack"))]
        if perlbal_available():
            subjects.append(Subject("Perlbal", system("perlbal")))

        cases: dict[str, tuple[bytes, Any]] = {}

        def kill_case(s: Setup) -> Any:
            async def fault() -> None:
                await asyncio.sleep(2)
                _signal_group(s.victim.proc, signal.SIGKILL)

            return fault

        def stop_case(s: Setup) -> Any:
            async def fault() -> None:
                await asyncio.sleep(2)
                _signal_group(s.victim.proc, signal.SIGSTOP)
                await asyncio.sleep(10)
                _signal_group(s.victim.proc, signal.SIGCONT)

            return fault

        def hole_case(s: Setup) -> Any:
            async def fault() -> None:
                return None

            return fault

        cases = {
            "kill -9 one of two apps": (b"/file/1k/3", kill_case),
            "SIGSTOP one app for 10 s": (b"/file/1k/3", stop_case),
            "first reproxy URL black-holed": (b"/bad/1k/3", hole_case),
            "first reproxy URL answers 404": (b"/miss/1k/3", hole_case),
        }
        keys = {"kill": "kill -9", "stop": "SIGSTOP", "hole": "black-holed", "404": "404"}
        wanted = [keys[c] for c in args.cases.split(",")]
        cases = {k: v for k, v in cases.items() if any(w in k for w in wanted)}
        for label, (path, make_fault) in cases.items():
            seconds = args.seconds + (12 if "SIGSTOP" in label else 0)

            def workload(
                s: Setup, path: bytes = path, make_fault: Any = make_fault, seconds: float = seconds
            ) -> dict[str, float]:
                return asyncio.run(_load(s.port, path, args.conns, seconds, make_fault(s)))

            groups[label] = run_interleaved(subjects, workload, runs=1, label=label)
    hole.close()
    notes_ok = "ok = requests answered 200 during the run (a throughput figure for the 404 case)."
    write_report(
        args.name,
        "Failures under load: hastack vs Perlbal 1.80",
        groups,
        metrics=["ok", "failed", "max_stall_s", "p50_ms"],
        ratio_to=None,
        notes=[
            f"Closed loop: {args.conns} keep-alive connections, every request logged, no client "
            f"retries; {args.seconds:g} s of load (SIGSTOP case: {args.seconds + 12:g} s); "
            f"requests still pending {GRACE:g} s after the load stops count as failed.",
            "Two app backends (raw asyncio) behind the front; reproxied 1 KiB files from nginx.",
            "hastack runs with default health checks (2 s interval, rise 2, fall 3) and "
            "defaults for timeouts (reproxy first byte 3 s, backend response 30 s).",
            "One run per case (these are failure traces, not throughput).",
            notes_ok,
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
