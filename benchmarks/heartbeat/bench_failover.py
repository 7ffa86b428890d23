"""Failover: hastack heartbeat vs keepalived 2.2.7 (Debian) on the same netns test bed.

Each system gets its own bed (3 nodes + a client on a bridge, its own subnet), echo servers on
every node, and a client connecting to the VIP every 10 ms. Faults on the master n1:

* crash: SIGKILL the daemon and take n1's link down (the host is gone);
* stop: SIGTERM the daemon (keepalived sends a priority-0 advert; hastack resigns).

Failover = first answer from the new master - last answer from the old one; failed requests
are the client's failures in between. After each run n1 comes back and (preempt) takes over
again. Then an idle soak counts VIP changes nobody asked for (false failovers).

    python -m benchmarks.heartbeat.bench_failover [--runs 5] [--soak 300]

Needs root (network namespaces). Only traffic inside the beds' namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_DIR, Runs, write_report
from hastack.heartbeat.testbed import HaCluster
from hastack.testing.netns import TestBed, netns_unavailable_reason


class KeepalivedCluster(HaCluster):
    """The same bed, with keepalived (VRRPv3, unicast peers) instead of hastack."""

    advert: float = 1.0
    kprocs: dict[str, subprocess.Popen[Any]]

    def kconfig(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        peers = "\n        ".join(self.bed.ip(n) for n in self.names if n != name)
        path = d / "keepalived.conf"
        path.write_text(f"""
global_defs {{
    router_id {name}
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 213
    priority {self.priorities[name]}
    advert_int {self.advert}
    unicast_src_ip {self.bed.ip(name)}
    unicast_peer {{
        {peers}
    }}
    virtual_ipaddress {{ {self.vip}/24 dev eth0 }}
}}
""")
        return path

    def start_node(self, name: str) -> Any:
        d = self.workdir / name
        cfg = self.kconfig(name)
        check = self.bed.run(name, ["keepalived", "-t", "-f", str(cfg)], check=False)
        if check.returncode != 0:
            raise RuntimeError(f"keepalived -t: {check.stdout}{check.stderr}")
        proc = self.bed.popen(name, [
            "keepalived", "-n", "-l", "-P", "-f", str(cfg), "-p", str(d / "k.pid"),
            "-r", str(d / "vrrp.pid"), "-c", str(d / "chk.pid"),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.kprocs[name] = proc
        vrrp_pid = d / "vrrp.pid"
        self.wait_for(lambda: vrrp_pid.exists(), 10, "keepalived vrrp child")
        return proc

    def pids(self, name: str) -> list[int]:
        d = self.workdir / name
        out = []
        for f in ("vrrp.pid", "k.pid"):
            with contextlib.suppress(OSError, ValueError):
                out.append(int((d / f).read_text().strip()))
        return out

    def kill(self, name: str) -> None:
        pids = self.pids(name)  # [vrrp child, parent]
        # freeze the parent so it cannot respawn the child, then SIGKILL both
        for sig, targets in ((signal.SIGSTOP, pids[1:]), (signal.SIGKILL, pids)):
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        proc = self.kprocs.pop(name)
        proc.wait(10)
        for f in ("vrrp.pid", "k.pid", "chk.pid"):
            with contextlib.suppress(OSError):
                (self.workdir / name / f).unlink()

    def term(self, name: str) -> None:
        proc = self.kprocs.pop(name)
        proc.terminate()
        proc.wait(10)
        for f in ("vrrp.pid", "k.pid", "chk.pid"):
            with contextlib.suppress(OSError):
                (self.workdir / name / f).unlink()

    def running(self, name: str) -> bool:
        return name in self.kprocs

    def stop_all(self) -> None:
        for name in list(self.kprocs):
            self.term(name)


class HastackBench(HaCluster):
    """hastack under `hastack up`: a SIGKILLed daemon is cleaned up and restarted."""

    def kill(self, name: str) -> None:
        self.signal_daemon(name, signal.SIGKILL)

    def term(self, name: str) -> None:
        self.stop_node(name)

    def running(self, name: str) -> bool:
        return name in self.nodes


@dataclass
class Handle:
    label: str
    cluster: Any  # KeepalivedCluster | HastackBench
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)

    def probe_on(self) -> None:
        self.cluster.start_probe()

    def probe_off(self) -> None:
        probe = self.cluster.probe
        if probe is not None:
            probe.lines.proc.kill()
            probe.lines.proc.wait(5)
            self.cluster.probe = None

    def ensure_n1_master(self) -> None:
        c = self.cluster
        for name in c.names:
            if not c.running(name):
                c.start_node(name)
        c.wait_for(lambda: c.holders() == ["n1"], 30, f"{self.label}: n1 master")


def bench_run(handle: Handle, fault: str, keep_timeline: bool) -> dict[str, float]:
    c = handle.cluster
    handle.ensure_n1_master()
    handle.probe_on()
    try:
        c.wait_served_by("n1", since=time.time(), timeout=20)
        time.sleep(0.3)  # steady state before the fault
        t_fault = time.time()
        if fault == "crash":
            # link first: nothing the dying daemon does afterwards (keepalived's VRRP child
            # gets SIGTERM when its parent dies and would send a priority-0 advert) escapes
            c.bed.link_down("n1")
            c.kill("n1")
        elif fault == "kill":
            c.kill("n1")  # the daemon only: host, link and echo server stay up
        else:
            c.term("n1")
        t_done = time.time()  # `ip` can take a while on a busy host: plot from here
        c.wait_served_by("n2", since=t_fault, timeout=30)
        time.sleep(0.5)
        holders_after = len(c.holders())
        result = c.probe.failover(t_fault, "n1", "n2")
        assert result is not None
        gap, fails = result
        if keep_timeline:
            handle.timelines[fault] = {
                "t_fault": t_done,
                "samples": c.probe.samples(),
                "events": c.vip_events(),
            }
    finally:
        handle.probe_off()
        c.bed.link_up("n1")
    return {"failover_s": gap, "failed_requests": float(fails), "holders_after": holders_after}


@contextlib.contextmanager
def start_subject(kind: str, subnet: str, advert: float, workdir: Path) -> Iterator[Handle]:
    with TestBed(hosts=3, client=True, subnet=subnet) as bed:
        if kind == "keepalived":
            cluster: Any = KeepalivedCluster(bed, workdir, quorum=False)
            cluster.advert = advert
            cluster.kprocs = {}
            label = f"keepalived advert {advert:g}s"
        else:
            cluster = HastackBench(bed, workdir, keepalive=0.1, deadtime=0.4, quorum=True,
                                   supervised=True, restart_delay=1.0)
            label = "hastack 100ms"
        try:
            cluster.start_echo()
            cluster.start_monitors()
            yield Handle(label, cluster)
        finally:
            cluster.stop_all()
            for proc in cluster.echo.values():
                proc.stop()


def count_changes(cluster: Any, since: float) -> int:
    return sum(1 for t, _, _ in cluster.vip_events() if t >= since)


def plot_timeline(handles: list[Handle], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [h for h in handles if "crash" in h.timelines]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.6 * len(shown)), squeeze=False)
    colours = {"n1": "tab:blue", "n2": "tab:orange", "n3": "tab:green", "fail": "tab:red"}
    rows = {"n1": 3, "n2": 2, "n3": 1}
    for ax, h in zip(axes[:, 0], shown, strict=True):
        tl = h.timelines["crash"]
        t0 = tl["t_fault"]
        # VIP holder spans from the address monitors
        held: dict[str, float] = {}
        for t, node, delta in tl["events"]:
            if delta > 0:
                held[node] = t
            elif node in held:
                ax.plot([held.pop(node) - t0, t - t0], [rows[node] + 0.25] * 2,
                        color=colours[node], lw=6, alpha=0.4)
        end = max((t for t, _ in tl["samples"]), default=t0) - t0
        for node, start in held.items():
            ax.plot([start - t0, end], [rows[node] + 0.25] * 2, color=colours[node], lw=6,
                    alpha=0.4)
        for who in ("n1", "n2", "n3", "fail"):
            xs = [t - t0 for t, w in tl["samples"] if w == who]
            ys = [rows.get(who, 0)] * len(xs)
            ax.scatter(xs, ys, s=6, color=colours[who], label=f"answer from {who}"
                       if who != "fail" else "failed request")
        ax.axvline(0, color="black", ls="--", lw=1)
        ax.set_yticks([0, 1, 2, 3], ["fail", "n3", "n2", "n1"])
        ax.set_xlim(-0.3, min(end, 5.0))
        ax.set_title(
            f"{h.label}: n1 link down + daemon SIGKILL at t=0 (bars: VIP configured; "
            "dots: client requests by start time)",
            fontsize=9,
        )
        ax.set_xlabel("seconds after the fault")
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--soak", type=float, default=300.0, help="idle soak seconds (0: skip)")
    args = ap.parse_args(argv)
    reason = netns_unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="hastack-bench-ha-"))
    specs = [
        ("keepalived", "10.221.0", 1.0),
        ("keepalived", "10.222.0", 0.1),
        ("hastack", "10.223.0", 0.1),
    ]
    groups: dict[str, Runs] = {}
    soak_rows: list[str] = []
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(start_subject(kind, subnet, advert, work / f"{kind}-{subnet}"))
            for kind, subnet, advert in specs
        ]
        for fault in ("crash", "stop", "kill"):
            runs: Runs = {h.label: [] for h in handles}
            for i in range(args.runs):
                for h in handles:
                    print(f"  {fault} run {i + 1}/{args.runs}: {h.label} ...", end="", flush=True)
                    m = bench_run(h, fault, keep_timeline=(i == 0))
                    runs[h.label].append(m)
                    print(f" {m['failover_s']:.3f}s, {m['failed_requests']:.0f} failed, "
                          f"{m['holders_after']:.0f} holders after", flush=True)
            groups[fault] = runs
        plot_timeline(handles, RESULTS_DIR / "heartbeat-timeline.png")
        if args.soak > 0:
            for h in handles:
                h.ensure_n1_master()
            t0 = time.time()
            print(f"  idle soak {args.soak:.0f}s (all systems at once) ...", flush=True)
            time.sleep(args.soak)
            for h in handles:
                n = count_changes(h.cluster, t0)
                holders = h.cluster.holders()
                soak_rows.append(f"| {h.label} | {args.soak:.0f} s | {n} | {', '.join(holders)} |")
                print(f"  soak {h.label}: {n} VIP changes, holders {holders}", flush=True)
    notes = [
        "Faults on the master n1 of 3 nodes (priorities 150/100/50), client connecting to the",
        "VIP every 10 ms (50 ms connect timeout). crash = n1's link down, then SIGKILL the daemon;",
        "stop = SIGTERM (keepalived: priority-0 advert; hastack: resign message);",
        "kill = SIGKILL the daemon only (host, link and echo server stay up).",
        "hastack runs under `hastack up`: after a SIGKILL the supervisor's crash_cleanup",
        "withdraws the VIP at once and restarts the daemon; keepalived's VIP stays on the dead",
        "daemon's host (holders_after = 2: two holders until keepalived is started again).",
        "holders_after = VIP holders 0.5 s after the client's first answer from n2.",
        "A failed request costs up to 50 ms (connect timeout), so failures x 10 ms underestimates",
        "the outage: use failover_s.",
        "keepalived 2.2.7: vrrp_version 3, unicast_peer, advert_int as named, default preempt.",
        "hastack: keepalive_interval 0.1, dead_timeout 0.4, quorum on, unicast peers.",
        "failed_requests counts client failures between the last answer from n1 and the first",
        "from n2.",
        "",
        "Timeline of one crash failover per system: `heartbeat-timeline.png`.",
    ]
    if soak_rows:
        notes += [
            "",
            "Idle soak (no faults; every VIP add/delete counts as a false failover):",
            "",
            "| system | duration | VIP changes | holders at the end |",
            "|---|---|---|---|",
            *soak_rows,
        ]
    write_report(
        "heartbeat",
        "Failover: hastack heartbeat vs keepalived",
        groups,
        metrics=["failover_s", "failed_requests", "holders_after"],
        ratio_to="keepalived advert 0.1s",
        subject="hastack 100ms",
        notes=notes,
        units={"failover_s": "s"},
    )
    print(f"results: {RESULTS_DIR / 'heartbeat.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
