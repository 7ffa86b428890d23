"""`make bench`: run every service's benchmarks, one after the other, each in its own process.

Each `benchmarks/<service>/bench_*.py` writes its own table under benchmarks/results/. Pass
service names to run only those: `python -m benchmarks.run_all cache proxy`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(p for p in HERE.glob("*/bench_*.py") if not wanted or p.parent.name in wanted)
    if not scripts:
        print("no benchmarks found", file=sys.stderr)
        return 1
    failed = []
    for i, script in enumerate(scripts, 1):
        module = f"benchmarks.{script.parent.name}.{script.stem}"
        print(f"[{i}/{len(scripts)}] {module}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", module], cwd=HERE.parent)
        print(
            f"[{i}/{len(scripts)}] {module}: exit {done.returncode}, "
            f"{time.monotonic() - started:.0f}s",
            flush=True,
        )
        if done.returncode != 0:
            failed.append(module)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    print("results: " + str(HERE / "results"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
