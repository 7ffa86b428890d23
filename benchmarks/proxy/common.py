"""Shared pieces of the proxy benchmarks: storage nginx, the app backend, the fronts, wrk.

Topology (shared/reference/perlbal.md section 6), all on loopback:

    wrk -> front (hastack | Perlbal 1.80 | nginx accel | HAProxy) -> app (raw asyncio + uvloop)
        front -> storage nginx (1 worker, sendfile, two ports, 16 files each of 1k/64k/1m)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import cpu_seconds
from hastack.testing import free_port

REPO = Path(__file__).resolve().parents[2]
SIZES = {"1k": 1024, "64k": 64 * 1024, "1m": 1024 * 1024}


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Proc:
    """A started daemon: what the harness measures (``pid``) and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def daemon(
    name: str,
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Proc]:
    log = open(Path(tempfile.gettempdir()) / f"bench-proxy-{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        wait_port(port, proc=proc)
        yield Proc(name, proc, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def make_files(root: Path) -> None:
    for size, n in SIZES.items():
        d = root / size
        d.mkdir(parents=True, exist_ok=True)
        for k in range(16):
            (d / f"{k}.bin").write_bytes(bytes([65 + k]) * n)


def nginx_conf(tmp: Path, body: str) -> Path:
    path = tmp / f"nginx-{abs(hash(body))}.conf"
    path.write_text(
        f"""
worker_processes 1;
daemon off;
user root;
pid {path}.pid;
error_log {path}.err warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    default_type application/octet-stream;
{body}
}}
"""
    )
    return path


@contextlib.contextmanager
def storage_nginx(tmp: Path) -> Iterator[tuple[int, int]]:
    root = tmp / "files"
    make_files(root)
    p1, p2 = free_port(), free_port()
    conf = nginx_conf(
        tmp, f"server {{ listen 127.0.0.1:{p1}; listen 127.0.0.1:{p2}; root {root}; }}"
    )
    with daemon("storage", ["nginx", "-c", str(conf)], p1):
        wait_port(p2)
        yield p1, p2


@contextlib.contextmanager
def app_backend(p1: int, p2: int, bad: int = 1, name: str = "app") -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.proxy.app", str(port), str(p1), str(p2), str(bad)]
    with daemon(name, argv, port, cwd=REPO) as p:
        yield p


# -- fronts -------------------------------------------------------------------------------------


@contextlib.contextmanager
def hastack_front(tmp: Path, apps: list[int], extra: str = "") -> Iterator[Proc]:
    port = free_port()
    backends = ", ".join(f'{{address = "127.0.0.1:{a}"}}' for a in apps)
    cfg = tmp / f"hastack-{port}.toml"
    cfg.write_text(
        f"""
[hastack]
run_dir = "{tmp}/run"
data_dir = "{tmp}/data"
log_level = "warning"

[proxy]

[proxy.pools.apps]
backends = [{backends}]

[proxy.listeners.web]
listen = "127.0.0.1:{port}"
pool = "apps"
{extra}
"""
    )
    argv = [sys.executable, "-m", "hastack", "run", "proxy", "--config", str(cfg)]
    with daemon("hastack", argv, port, cwd=REPO) as p:
        yield p


def perlbal_available() -> bool:
    return shutil.which("perlbal") is not None


@contextlib.contextmanager
def perlbal_front(tmp: Path, apps: list[int]) -> Iterator[Proc]:
    port = free_port()
    adds = "\n".join(f"  POOL apps ADD 127.0.0.1:{a}" for a in apps)
    conf = tmp / f"perlbal-{port}.conf"
    conf.write_text(
        f"""
CREATE POOL apps
{adds}
CREATE SERVICE front
  SET role = reverse_proxy
  SET listen = 127.0.0.1:{port}
  SET pool = apps
  SET persist_client = on
  SET persist_backend = on
  SET backend_persist_cache = 64
  SET verify_backend = off
  SET connect_ahead = 0
  SET enable_reproxy = on
  SET idle_timeout = 30
ENABLE front
"""
    )
    env = {"PERLBAL_XS_HEADERS": "1"} if xs_headers() else {}
    with daemon("perlbal", ["perlbal", f"--config={conf}"], port, env=env) as p:
        yield p


def xs_headers() -> bool:
    return (
        subprocess.run(
            ["perl", "-MPerlbal::XS::HTTPHeaders", "-e", "1"], capture_output=True
        ).returncode
        == 0
    )


@contextlib.contextmanager
def nginx_front(tmp: Path, app: int, p1: int, p2: int) -> Iterator[Proc]:
    port = free_port()
    conf = nginx_conf(
        tmp,
        f"""
    upstream app {{ server 127.0.0.1:{app}; keepalive 64; }}
    upstream storage {{ server 127.0.0.1:{p1}; server 127.0.0.1:{p2} backup; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /_reproxy/ {{
            internal;
            proxy_pass http://storage/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_404;
            proxy_buffers 16 16k;
            proxy_max_temp_file_size 0;
        }}
    }}""",
    )
    with daemon("nginx", ["nginx", "-c", str(conf)], port) as p:
        yield p


@contextlib.contextmanager
def haproxy_front(tmp: Path, app: int) -> Iterator[Proc]:
    port = free_port()
    conf = tmp / f"haproxy-{port}.cfg"
    conf.write_text(
        f"""
global
    maxconn 8192
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend f
    bind 127.0.0.1:{port}
    default_backend b
backend b
    http-reuse always
    server app 127.0.0.1:{app}
"""
    )
    with daemon("haproxy", ["haproxy", "-db", "-f", str(conf)], port) as p:
        yield p


# -- load -----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, conns: int, seconds: float, pid: int, threads: int = 2) -> dict[str, float]:
    """One bounded wrk run; the front's CPU (pid tree) is measured around it."""
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
        + [url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    cpu = cpu_seconds(pid) - cpu0
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    read = re.search(r"requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    mult = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    nbytes = float(read.group(1)) * mult.get(read.group(2), 1) if read else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "87.99%" in the thread stats must not be read as the 99th percentile.
    p50 = _ms(re.search(r"(?m)^\s+50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"(?m)^\s+99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "MB_s": nbytes / seconds / 1e6,
        "cpu_pct": 100 * cpu / seconds,
        "cpu_us_per_req": 1e6 * cpu / reqs if reqs else float("nan"),
        "errors": float(errors),
    }
