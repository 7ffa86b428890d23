"""Profile the 1 KiB reproxy hot path: user/system CPU split and where the Python time goes.

Runs the reproxy topology with the hastack front under wrk (16 connections), samples the front
with py-spy (if installed: `pip install py-spy`) and writes benchmarks/results/proxy-profile.md.

    python -m benchmarks.proxy.profile_reproxy [--seconds 6]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import RESULTS_DIR, machine_note
from benchmarks.proxy.common import app_backend, hastack_front, storage_nginx, wrk


def _times(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / 100, int(fields[12]) / 100


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    have_spy = Path(spy).exists()
    raw = tmp / "profile.txt"
    with (
        storage_nginx(tmp) as (p1, p2),
        app_backend(p1, p2) as app,
        hastack_front(tmp, [app.port]) as front,
    ):
        url = f"http://127.0.0.1:{front.port}/file/1k/3"
        wrk(url, 16, 2, front.pid)  # warm up
        u0, s0 = _times(front.pid)
        sampler = None
        if have_spy:
            sampler = subprocess.Popen(
                [spy, "record", "-p", str(front.pid), "-d", str(args.seconds), "-r", "250",
                 "-f", "raw", "-o", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.3)
        result = wrk(url, 16, args.seconds, front.pid)
        u1, s1 = _times(front.pid)
        if sampler is not None:
            sampler.wait(60)
    n = result["rps"] * args.seconds
    lines = [
        "# Profile of the 1 KiB reproxy path (hastack front)",
        "",
        f"Machine: {machine_note()}",
        "",
        f"wrk -t2 -c16 -d{args.seconds}s: {result['rps']:,.0f} requests/s, "
        f"p50 {result['p50_ms']:.2f} ms.",
        "",
        "| CPU per request | us |",
        "|---|---|",
        f"| user (Python) | {1e6 * (u1 - u0) / n:.1f} |",
        f"| system (3 reads, 3 writes, epoll) | {1e6 * (s1 - s0) / n:.1f} |",
        f"| total | {1e6 * (u1 - u0 + s1 - s0) / n:.1f} |",
        "",
    ]
    if have_spy and raw.exists():
        own: collections.Counter[str] = collections.Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            frame = re.sub(r":\d+\)", ")", stack.split(";")[-1])
            own[frame] += int(count)
        lines += [
            "py-spy self time by function (share of all samples, idle included). py-spy sees "
            "Python frames only: time inside a system call is charged to the Python function "
            "that made it (the transport write is mostly the kernel's loopback send, which also "
            "wakes the receiver), so the user/system split above is the better guide.",
            "",
            "| share | function |",
            "|---|---|",
        ]
        lines += [f"| {100 * c / total:.1f} % | `{f}` |" for f, c in own.most_common(20)]
    else:
        lines.append("(py-spy not installed: no per-function table)")
    out = RESULTS_DIR / "proxy-profile.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
