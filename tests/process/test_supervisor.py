"""`hastack up` / `status` / `down` as real processes, with toy services from plugins_for_tests."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from hastack.testing import HastackProcess, ProcessError, free_port, hastack_argv


def three_services(make_config, tmp_path: Path, **crashy: str) -> Path:  # type: ignore[no-untyped-def]
    extra = "".join(f"{k} = {v}\n" for k, v in crashy.items())
    return make_config(
        f"""
[hastack]
name = "sup-test"
run_dir = "{tmp_path / "run"}"
data_dir = "{tmp_path / "data"}"
restart_initial_interval = 0.1
restart_max_interval = 0.4
stop_timeout = 3.0

[first]
listen = "127.0.0.1:0"
start_delay = 0.3
stamp_file = "{tmp_path / "stamps"}"

[second]
listen = "127.0.0.1:0"
stamp_file = "{tmp_path / "stamps"}"

[crashy]
# a fixed port: the restarted process must be reachable where the first one was
listen = "127.0.0.1:{free_port()}"
cleanup_file = "{tmp_path / "cleanups"}"
{extra}"""
    )


def hastack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        hastack_argv(*args), capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def send(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""


def test_up_starts_in_order_restarts_crashes_and_stops_in_reverse(
    make_config, tmp_path: Path, plugin_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    config = three_services(make_config, tmp_path)
    with HastackProcess(config, args=["up", str(config)], env=plugin_env) as up:
        # readiness order: second began starting only after first was ready
        stamps = {
            line.split()[0]: [float(x) for x in line.split()[1:3]]
            for line in (tmp_path / "stamps").read_text().splitlines()
        }
        assert stamps["second"][0] >= stamps["first"][1]

        # status shows the three services as a table
        status = hastack("status", str(config), env=plugin_env)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[1].split() == ["SERVICE", "PID", "ADDRESS", "STATE", "UPTIME", "RESTARTS"]
        rows = {line.split()[0]: line.split() for line in lines[2:]}
        assert set(rows) == {"first", "second", "crashy"}
        assert all(row[3] == "running" and row[5] == "0" for row in rows.values())

        # a crash is cleaned up and restarted (with backoff), twice
        crashy = up.addresses["crashy"]["listen"]
        first_pid = int(rows["crashy"][1])
        for n in (1, 2):
            send(crashy, b"crash\n")
            up.wait_for_event("crash_cleanup", 10, count=n, service="crashy")
            up.wait_for_event("child_ready", 15, count=n + 1, service="crashy")
        assert len((tmp_path / "cleanups").read_text().splitlines()) == 2
        status = hastack("status", str(config), env=plugin_env)
        row = next(line.split() for line in status.stdout.splitlines() if line.startswith("crashy"))
        assert row[3] == "running" and row[5] == "2" and int(row[1]) != first_pid

        # the output of every child is forwarded with its name as prefix
        assert re.search(r"^first\s*\| .*first ready", up.output(), re.M)

        # `hastack down` stops everything in reverse order and `up` exits 0
        down = hastack("down", str(config), env=plugin_env)
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0
    out = up.output()
    stopped = [m.group(1) for m in re.finditer(r"^(\w+)\s*\| .* (\w+) stopped$", out, re.M)]
    assert stopped == ["crashy", "second", "first"]
    assert not (tmp_path / "run" / "hastack.pid").exists()
    status = hastack("status", str(config), env=plugin_env)
    assert status.returncode == 3 and "not running" in status.stdout


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(
    make_config, tmp_path: Path, plugin_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    config = three_services(make_config, tmp_path)
    with HastackProcess(config, args=["up", str(config)], env=plugin_env) as up:
        assert send(up.addresses["crashy"]["listen"], b"hang\n") == b"hanging\n"
        up.signal(signal.SIGTERM)
        assert up.wait(30) == 0
    out = up.output()
    assert "crashy: no exit 3.0s after SIGTERM; SIGKILL" in out
    # a SIGKILLed child ran no exit path: its crash cleanup ran in the supervisor
    assert (tmp_path / "cleanups").exists()


def test_up_fails_clearly_when_a_service_cannot_start(
    make_config, tmp_path: Path, plugin_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(
            f'[first]\nlisten = "127.0.0.1:0"\n[second]\nlisten = "127.0.0.1:{port}"\n'
        )
        up = HastackProcess(config, args=["up", str(config)], env=plugin_env)
        with pytest.raises(ProcessError, match="before 'ready'"):
            up.start()
        assert up.wait(30) == 1
    out = up.output()
    assert "second: cannot start" in out and "Address already in use" in out
    assert "second: exited with 2 before it was ready; stopping everything" in out
    assert re.search(r"^first\s*\| .*first stopped", out, re.M)


def test_up_refuses_a_second_supervisor(
    make_config, tmp_path: Path, plugin_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    config = make_config('[first]\nlisten = "127.0.0.1:0"\n')
    with HastackProcess(config, args=["up", str(config)], env=plugin_env):
        second = hastack("up", str(config), env=plugin_env)
        assert second.returncode == 1
        assert "already running" in second.stderr
