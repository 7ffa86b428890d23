"""`hastack run proxy` as a subprocess: readiness, SIGHUP reload, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from hastack.testing import HastackProcess, free_port, poll_until, write_config


def start_backend(root: Path, text: str) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "who").write_text(text)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def serving() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=1).read()
        except OSError:
            return False
        return True

    try:
        poll_until(serving, 15, f"http.server on port {port}", 0.05)
    except AssertionError:
        proc.kill()
        raise
    return proc, port


def proxy_config(tmp_path: Path, listen: int, admin: int, backend: int) -> Path:
    return write_config(
        tmp_path,
        f"""
[proxy]
admin_listen = "127.0.0.1:{admin}"

[proxy.pools.apps]
backends = [{{address = "127.0.0.1:{backend}"}}]

[proxy.listeners.web]
listen = "127.0.0.1:{listen}"
pool = "apps"

[[proxy.listeners.web.routes]]
path_prefix = "/static/"
static_root = "{tmp_path / "static"}"
strip_prefix = true
""",
    )


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        data: bytes = r.read()
        return data


def test_run_reload_and_terminate(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "s.txt").write_text("static\n")
    a, pa = start_backend(tmp_path / "a", "A")
    b, pb = start_backend(tmp_path / "b", "B")
    try:
        listen, admin = free_port(), free_port()
        path = proxy_config(tmp_path, listen, admin, pa)
        with HastackProcess(path, "proxy") as proc:
            base = f"http://127.0.0.1:{listen}"
            assert get(base + "/who") == b"A"
            assert get(base + "/static/s.txt") == b"static\n"
            assert b"apps" in get(f"http://127.0.0.1:{admin}/proxy/pools")
            cli = [sys.executable, "-m", "hastack", "--config", str(path), "proxy"]
            out = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and f"127.0.0.1:{pa}" in out.stdout, out.stderr
            out = subprocess.run(
                [*cli, "add", "apps", f"127.0.0.1:{pb}"], capture_output=True, text=True, timeout=30
            )
            assert out.returncode == 0, out.stderr
            out = subprocess.run(
                [*cli, "remove", "apps", f"127.0.0.1:{pb}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
            proxy_config(tmp_path, listen, admin, pb)
            proc.signal(signal.SIGHUP)
            try:
                poll_until(lambda: get(base + "/who") == b"B", 15, "reload to reach B", 0.05)
            except AssertionError as exc:
                raise AssertionError(proc.output()) from exc
            proc.terminate()
            assert proc.wait(30) == 0, proc.output()
    finally:
        a.kill()
        b.kill()
        a.wait()
        b.wait()
