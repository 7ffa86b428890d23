"""Side-by-side benchmark harness: hastack and the real peer daemon, in one run.

A benchmark defines ``Subject``s (how to start each system; the started handle exposes the
``pid`` whose CPU is measured), a workload (drive load at one handle, return metrics), runs them
interleaved (A B A B ..., so drift on a shared machine hits both alike) and writes a markdown
table of medians and hastack/peer ratios, plus a PNG chart, under ``benchmarks/results/``.

    subjects = [Subject("hastack", start_hastack), Subject("memcached", start_memcached)]
    results = run_interleaved(subjects, workload, runs=5, progress=True)
    write_report("cache", "hastack cache vs memcached", {"90/10 get/set": results},
                 metrics=["ops_s", "cpu_us_per_op"], ratio_to="memcached")
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

Runs = dict[str, list[dict[str, float]]]  # subject name -> one metrics dict per run


@dataclass
class Subject:
    name: str
    start: Callable[[], AbstractContextManager[Any]]


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3 of stat(5)); ppid is field 4, utime 14, stime 15.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and every live descendant (nginx/perlbal workers included)."""
    total = 0.0
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                parents[int(entry)], cpu[int(entry)] = st
    wanted = {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in wanted and child not in wanted:
                wanted.add(child)
                changed = True
    for p in wanted:
        total += cpu.get(p, 0.0)
    return total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def cpu_meter(pid: int) -> Iterator[dict[str, float]]:
    """Measure wall time and CPU seconds of ``pid``'s tree across the ``with`` block."""
    out: dict[str, float] = {}
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    try:
        yield out
    finally:
        out["cpu_s"] = cpu_seconds(pid) - cpu0
        out["wall_s"] = time.perf_counter() - t0


def machine_note() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {model}, "
        f"{os.cpu_count()} cores; "
        f"Linux {platform.release()}; Python {platform.python_version()}; load average {load} "
        "(a shared machine: compare ratios from the same run, not absolute numbers)"
    )


def run_interleaved(
    subjects: Sequence[Subject],
    workload: Callable[[Any], Mapping[str, float]],
    *,
    runs: int = 5,
    progress: bool = True,
    label: str = "",
) -> Runs:
    """Start each subject once, then run ``workload`` against them in turn, ``runs`` rounds."""
    results: Runs = {s.name: [] for s in subjects}
    with contextlib.ExitStack() as stack:
        handles = [(s, stack.enter_context(s.start())) for s in subjects]
        for i in range(runs):
            for subject, handle in handles:
                if progress:
                    print(f"  {label} run {i + 1}/{runs}: {subject.name} ...", end="", flush=True)
                metrics = dict(workload(handle))
                results[subject.name].append(metrics)
                if progress:
                    shown = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
                    print(f" {shown}", flush=True)
    return results


def medians(runs: Runs) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, rows in runs.items():
        keys = rows[0].keys() if rows else []
        out[name] = {k: statistics.median(r[k] for r in rows if k in r) for k in keys}
    return out


def _fmt(v: float) -> str:
    if isinstance(v, int) or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def write_report(
    name: str,
    title: str,
    groups: Mapping[str, Runs],
    *,
    metrics: Sequence[str],
    ratio_to: str | None = None,
    subject: str = "hastack",
    notes: Sequence[str] = (),
    units: Mapping[str, str] | None = None,
    chart: bool = True,
) -> Path:
    """Write ``results/<name>.md`` (medians, max, ratios) and ``results/<name>.png``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    units = dict(units or {})
    n_runs = max((len(r) for runs in groups.values() for r in runs.values()), default=0)
    lines = [f"# {title}", "", f"Machine: {machine_note()}", ""]
    lines.append(f"Medians of {n_runs} interleaved runs per system (max in parentheses).")
    if ratio_to:
        lines.append(f"Ratio = {subject} / {ratio_to} (same run, same load generator).")
    lines.append("")
    header = [
        "scenario",
        "system",
        *(f"{m}{(' (' + units[m] + ')') if m in units else ''}" for m in metrics),
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    chart_data: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, runs in groups.items():
        med = medians(runs)
        chart_data[scenario] = med
        for system, rows in runs.items():
            cells = []
            for m in metrics:
                vals = [r[m] for r in rows if m in r]
                cells.append(f"{_fmt(med[system][m])} ({_fmt(max(vals))})" if vals else "-")
            lines.append(f"| {scenario} | {system} | " + " | ".join(cells) + " |")
        if ratio_to and ratio_to in med and subject in med:
            cells = []
            for m in metrics:
                base = med[ratio_to].get(m)
                mine = med[subject].get(m)
                cells.append(f"**{mine / base:.2f}x**" if base and mine is not None else "-")
            lines.append(f"| {scenario} | ratio | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    lines += ["", f"Command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`", ""]
    md = RESULTS_DIR / f"{name}.md"
    md.write_text("\n".join(lines))
    if chart:
        _chart(RESULTS_DIR / f"{name}.png", title, chart_data, metrics, units)
    return md


def _chart(
    path: Path,
    title: str,
    data: Mapping[str, Mapping[str, Mapping[str, float]]],
    metrics: Sequence[str],
    units: Mapping[str, str],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(data)
    systems = sorted({s for med in data.values() for s in med})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    width = 0.8 / max(1, len(systems))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, system in enumerate(systems):
            xs = [j + i * width for j in range(len(scenarios))]
            ys = [data[sc].get(system, {}).get(metric, 0.0) for sc in scenarios]
            ax.bar(xs, ys, width, label=system)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=8)
        ax.set_title(metric + (f" ({units[metric]})" if metric in units else ""), fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
