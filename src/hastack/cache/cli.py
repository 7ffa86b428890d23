"""``hastack cache ...``: memory sizing and hot keys for running caches.

``hastack cache size-estimate HOST:PORT...`` asks every server for ``stats mrc`` (its online
SHARDS miss-ratio curve) and ``stats``, and answers "what hit ratio would N MB give?" for the
live workload: a table on stdout and a PNG curve (``--png``). Curves are in items; the mean
item cost reported by each server (``mrc_bytes_per_item``) turns them into bytes. For several
servers the estimate assumes the memory is split between them as the keys are (consistent
hashing), so a cluster of total size M has each server at M * its share of the accesses.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

from hastack.config import Address


@dataclass
class ServerCurve:
    address: str
    accesses: int
    bytes_per_item: float
    points: list[tuple[float, float]]  # (items, miss ratio), increasing items
    limit_maxbytes: int
    bytes_used: int
    get_hits: int
    get_misses: int

    def miss_ratio_at_items(self, items: float) -> float:
        pts = self.points
        if not pts:
            return 1.0
        if items <= pts[0][0]:
            return pts[0][1] if items >= pts[0][0] else 1.0
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if x0 <= items <= x1:
                return y0 + (y1 - y0) * (items - x0) / (x1 - x0)
        return pts[-1][1]

    def miss_ratio_at_bytes(self, nbytes: float) -> float:
        if self.bytes_per_item <= 0:
            return 1.0
        return self.miss_ratio_at_items(nbytes / self.bytes_per_item)


async def _stats(address: Address, sub: str, timeout: float) -> dict[str, str]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address.host, address.port), timeout
    )
    out: dict[str, str] = {}
    try:
        writer.write(f"stats {sub}\r\n".encode() if sub else b"stats\r\n")
        while True:
            line = (await asyncio.wait_for(reader.readline(), timeout)).decode("latin-1")
            if line in ("END\r\n", ""):
                break
            parts = line.rstrip("\r\n").split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
            else:
                raise RuntimeError(
                    f"{address}: 'stats {sub}' answered {line.strip()!r} (not a hastack cache?)"
                )
    finally:
        writer.close()
    return out


async def fetch_curve(address: Address, timeout: float = 5.0) -> ServerCurve:
    mrc = await _stats(address, "mrc", timeout)
    general = await _stats(address, "", timeout)
    points = sorted(
        (float(k.split(":", 1)[1]), float(v)) for k, v in mrc.items() if k.startswith("mrc:")
    )
    return ServerCurve(
        address=str(address),
        accesses=int(mrc.get("mrc_accesses", "0")),
        bytes_per_item=float(mrc.get("mrc_bytes_per_item", "0")),
        points=points,
        limit_maxbytes=int(general.get("limit_maxbytes", "0")),
        bytes_used=int(general.get("bytes", "0")),
        get_hits=int(general.get("get_hits", "0")),
        get_misses=int(general.get("get_misses", "0")),
    )


def combined_hit_ratio(curves: list[ServerCurve], total_bytes: float) -> float:
    total = sum(c.accesses for c in curves)
    if total == 0:
        return 0.0
    hit = 0.0
    for c in curves:
        share = c.accesses / total
        hit += share * (1.0 - c.miss_ratio_at_bytes(total_bytes * share))
    return hit


def size_table(curves: list[ServerCurve], sizes_mb: list[float]) -> list[tuple[float, float]]:
    return [(mb, combined_hit_ratio(curves, mb * 1024 * 1024)) for mb in sizes_mb]


def default_sizes_mb(curves: list[ServerCurve]) -> list[float]:
    top_bytes = sum(c.points[-1][0] * c.bytes_per_item for c in curves if c.points)
    top_mb = max(top_bytes / (1024 * 1024), 1.0)
    return [round(top_mb * f, 3) for f in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)]


def write_png(curves: list[ServerCurve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = default_sizes_mb(curves)
    top = sizes[-1]
    xs = [top * i / 100 for i in range(1, 101)]
    ys = [combined_hit_ratio(curves, x * 1024 * 1024) for x in xs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, ys, label="estimated hit ratio (SHARDS)")
    configured = sum(c.limit_maxbytes for c in curves) / (1024 * 1024)
    if configured <= top:
        ax.axvline(configured, linestyle="--", color="grey", label="configured memory")
    used = sum(c.bytes_used for c in curves) / (1024 * 1024)
    hits = sum(c.get_hits for c in curves)
    lookups = hits + sum(c.get_misses for c in curves)
    if lookups:
        ax.plot([used], [hits / lookups], "o", color="black", label="observed now")
    ax.set_xlabel("cache memory (MB, all servers)")
    ax.set_ylabel("hit ratio")
    ax.set_ylim(0, 1)
    ax.set_title("hastack cache: hit ratio vs memory, live workload")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_size_estimate(args: argparse.Namespace) -> int:
    addresses = [Address.parse(a) for a in args.servers]
    try:
        curves = asyncio.run(_fetch_all(addresses, args.timeout))
    except (OSError, TimeoutError, RuntimeError) as exc:
        print(f"hastack cache size-estimate: {exc or type(exc).__name__}")
        return 1
    accesses = sum(c.accesses for c in curves)
    print(f"servers: {len(curves)}  sampled workload: {accesses} accesses")
    for c in curves:
        observed = c.get_hits / max(1, c.get_hits + c.get_misses)
        print(
            f"  {c.address}: {c.bytes_used / 1048576:.1f} MB used of "
            f"{c.limit_maxbytes / 1048576:.0f} MB, {c.bytes_per_item:.0f} B/item, "
            f"observed hit ratio {observed:.3f}"
        )
    if accesses == 0:
        print("no accesses sampled yet: run some traffic first")
        return 1
    sizes = [float(s) for s in args.sizes_mb] if args.sizes_mb else default_sizes_mb(curves)
    print(f"{'memory (MB)':>12}  {'hit ratio':>9}")
    for mb, hit in size_table(curves, sizes):
        print(f"{mb:12.2f}  {hit:9.3f}")
    if args.png:
        write_png(curves, Path(args.png))
        print(f"curve written to {args.png}")
    return 0


async def _fetch_all(addresses: list[Address], timeout: float) -> list[ServerCurve]:
    return list(await asyncio.gather(*(fetch_curve(a, timeout) for a in addresses)))


def cmd_hotkeys(args: argparse.Namespace) -> int:
    async def run() -> dict[str, dict[str, str]]:
        out = {}
        for a in args.servers:
            out[a] = await _stats(Address.parse(a), "hotkeys", args.timeout)
        return out

    try:
        result = asyncio.run(run())
    except (OSError, TimeoutError, RuntimeError) as exc:
        print(f"hastack cache hotkeys: {exc or type(exc).__name__}")
        return 1
    print(f"{'server':<22} {'key':<40} {'~requests':>10} {'± error':>8}")
    for server, stats in result.items():
        for name, value in stats.items():
            if name.startswith("hotkey:"):
                key, count, err = value.rsplit(" ", 2)
                print(f"{server:<22} {key:<40} {count:>10} {err:>8}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("cache", help="memory sizing and hot keys of running caches")
    sub = p.add_subparsers(dest="cache_command", required=True)
    s = sub.add_parser("size-estimate", help="hit ratio per memory size for the live workload")
    s.add_argument("servers", nargs="+", metavar="HOST:PORT")
    s.add_argument("--png", default="cache-size-estimate.png", help="write the curve here")
    s.add_argument("--sizes-mb", nargs="*", help="memory sizes to tabulate (default: a range)")
    s.add_argument("--timeout", type=float, default=5.0)
    s.set_defaults(func=cmd_size_estimate)
    h = sub.add_parser("hotkeys", help="most requested keys (Space-Saving sketch)")
    h.add_argument("servers", nargs="+", metavar="HOST:PORT")
    h.add_argument("--timeout", type=float, default=5.0)
    h.set_defaults(func=cmd_hotkeys)
