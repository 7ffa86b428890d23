"""Plain proxying: wrk -> front -> app answering 1 KiB; hastack vs nginx vs HAProxy (and Perlbal).

    python -m benchmarks.proxy.bench_plain [--seconds 5] [--runs 3] [--conns 16,64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Subject, run_interleaved, write_report
from benchmarks.proxy.common import (
    app_backend,
    haproxy_front,
    hastack_front,
    nginx_front,
    perlbal_available,
    perlbal_front,
    storage_nginx,
    wrk,
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--name", default="proxy-plain")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    groups: dict[str, Any] = {}
    with storage_nginx(tmp) as (p1, p2), app_backend(p1, p2) as app:
        subjects = [
            Subject("hastack", lambda: hastack_front(tmp, [app.port])),
            Subject("nginx", lambda: nginx_front(tmp, app.port, p1, p2)),
            Subject("HAProxy", lambda: haproxy_front(tmp, app.port)),
        ]
        if perlbal_available():
            subjects.append(Subject("Perlbal", lambda: perlbal_front(tmp, [app.port])))
        for conns in [int(c) for c in args.conns.split(",")]:

            def workload(h: Any, conns: int = conns) -> dict[str, float]:
                return wrk(f"http://127.0.0.1:{h.port}/plain", conns, args.seconds, h.pid)

            label = f"1k plain c{conns}"
            groups[label] = run_interleaved(subjects, workload, runs=args.runs, label=label)
    write_report(
        args.name,
        "Plain proxying: wrk -> front -> app (1 KiB body)",
        groups,
        metrics=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "errors"],
        ratio_to="nginx",
        notes=[
            "Front CPU = utime+stime of the front's process tree over the run, per request.",
            "nginx 1.22 (1 worker, upstream keep-alive 64), HAProxy 2.6 (nbthread 1, "
            "http-reuse always), Perlbal 1.80 (persist_client/backend on), hastack defaults.",
            f"{args.runs} runs of {args.seconds:g} s each per system; wrk -t2.",
        ],
        units={"cpu_us_per_req": "front CPU us/req"},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
