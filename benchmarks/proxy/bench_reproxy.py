"""Reproxy benchmark: hastack vs Perlbal 1.80 vs nginx (X-Accel-Redirect), side by side.

wrk -> front -> app answering X-REPROXY-URL (nginx: X-Accel-Redirect) -> storage nginx.
Files of 1 KiB, 64 KiB and 1 MiB; 16 and 64 connections; runs interleaved; medians reported.

    python -m benchmarks.proxy.bench_reproxy [--seconds 5] [--runs 3] [--sizes 1k,64k,1m]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Subject, run_interleaved, write_report
from benchmarks.proxy.common import (
    app_backend,
    hastack_front,
    nginx_front,
    perlbal_available,
    perlbal_front,
    storage_nginx,
    wrk,
    xs_headers,
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1k,64k,1m")
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--systems", default="hastack,Perlbal,nginx accel")
    ap.add_argument("--name", default="proxy-reproxy")
    args = ap.parse_args()
    wanted = args.systems.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    groups: dict[str, Any] = {}
    with storage_nginx(tmp) as (p1, p2), app_backend(p1, p2) as app:
        subjects = [Subject("hastack", lambda: hastack_front(tmp, [app.port]))]
        if perlbal_available():
            subjects.append(Subject("Perlbal", lambda: perlbal_front(tmp, [app.port])))
        subjects.append(Subject("nginx accel", lambda: nginx_front(tmp, app.port, p1, p2)))
        subjects = [s for s in subjects if s.name in wanted]
        for size in args.sizes.split(","):
            for conns in [int(c) for c in args.conns.split(",")]:

                def workload(h: Any, size: str = size, conns: int = conns) -> dict[str, float]:
                    kind = "accel" if h.name == "nginx" else "file"
                    url = f"http://127.0.0.1:{h.port}/{kind}/{size}/3"
                    return wrk(url, conns, args.seconds, h.pid)

                label = f"{size} c{conns}"
                groups[label] = run_interleaved(subjects, workload, runs=args.runs, label=label)
    notes = [
        "Front CPU = utime+stime of the front's process tree over the run, per request.",
        "Perlbal 1.80 config as in shared/reference/perlbal.md section 6 "
        f"(XS header parser: {'on' if xs_headers() else 'not installed'}); nginx 1.22 "
        "accel: 1 worker, X-Accel-Redirect to an internal location over a keep-alive upstream.",
        "hastack: `hastack run proxy` (uvloop), default settings, one process.",
        f"{args.runs} runs of {args.seconds:g} s each per system and scenario; wrk -t2.",
    ]
    write_report(
        args.name,
        "Reproxy: wrk -> front -> app (X-REPROXY-URL) -> storage nginx",
        groups,
        metrics=["rps", "p50_ms", "p99_ms", "MB_s", "cpu_us_per_req", "errors"],
        ratio_to="Perlbal" if "Perlbal" in wanted else None,
        notes=notes,
        units={"cpu_us_per_req": "front CPU us/req"},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
