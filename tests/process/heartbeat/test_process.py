"""`hastack run heartbeat` as a subprocess and `hastack ha ...` against it (loopback, no VIP)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from hastack.testing import HastackProcess, free_port, hastack_argv, write_config
from hastack.testing import poll_until as wait_for


def node_config(tmp: Path, name: str, port: int, peer: int, admin: int, extra: str = "") -> Path:
    return write_config(tmp / name, f"""
[hastack]
name = "{name}"
run_dir = "{tmp / name / 'run'}"
data_dir = "{tmp / name / 'data'}"

[heartbeat]
admin_listen = "127.0.0.1:{admin}"
nodes = ["a", "b"]
address = "127.0.0.{1 if name == 'a' else 2}"
priority = {150 if name == 'a' else 100}
bind = "127.0.0.1:{port}"
unicast_peers = ["127.0.0.1:{peer}"]
auth_keys = {{ "1" = "secret" }}
keepalive_interval = 0.05
warn_timeout = 0.2
dead_timeout = 0.3
initdead_timeout = 1.0
auto_failback = false
link_check = false
{extra}""")


def ha(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hastack_argv("--config", str(cfg), "ha", *args), capture_output=True,
                          text=True, timeout=30)


def test_run_status_standby_takeover_and_sigterm(tmp_path: Path) -> None:
    pa, pb = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    aa, ab = free_port(), free_port()
    ca = node_config(tmp_path, "a", pa, pb, aa)
    cb = node_config(tmp_path, "b", pb, pa, ab)
    check = subprocess.run(hastack_argv("check-config", str(ca)), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with HastackProcess(ca, "heartbeat") as a, HastackProcess(cb, "heartbeat") as b:
        wait_for(lambda: "a (self)  master" in ha(ca, "status").stdout)
        out = ha(cb, "status").stdout
        assert "b (self)  backup" in out and "\na " in out, out
        assert ha(ca, "standby").returncode == 0
        wait_for(lambda: "b (self)  master" in ha(cb, "status").stdout)
        assert ha(ca, "takeover").returncode == 0
        wait_for(lambda: "a (self)  master" in ha(ca, "status").stdout)
        a.terminate()
        assert a.wait(15) == 0
        wait_for(lambda: "b (self)  master" in ha(cb, "status").stdout)
        assert "dead (gone)" in ha(cb, "status").stdout
        b.terminate()
        assert b.wait(15) == 0
    res = ha(ca, "status")
    assert res.returncode == 1 and "cannot reach" in res.stderr


def test_groups_status_rows_and_group_standby(tmp_path: Path) -> None:
    """Two resource groups preferring different nodes: one status row per group and node."""
    pa, pb = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    aa, ab = free_port(), free_port()

    def groups(first: int, second: int) -> str:
        return "".join(
            f'\n[[heartbeat.groups]]\nname = "{name}"\npriority = {prio}\nauto_failback = true\n'
            for name, prio in (("web-a", first), ("web-b", second))
        )

    # auto_failback = false at the top, true in each group (groups override it)
    ca = node_config(tmp_path, "a", pa, pb, aa, groups(150, 50))
    cb = node_config(tmp_path, "b", pb, pa, ab, groups(100, 100))
    check = subprocess.run(hastack_argv("check-config", str(ca)), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with HastackProcess(ca, "heartbeat") as a, HastackProcess(cb, "heartbeat") as b:
        wait_for(lambda: "b (self)  web-b  master" in ha(cb, "status").stdout)
        out = ha(ca, "status").stdout
        assert "a (self)  web-a  master" in out and "a (self)  web-b  backup" in out, out
        assert "\nb         web-b  master" in out, out
        res = ha(cb, "standby", "--group", "web-b")
        assert res.returncode == 0 and "web-b backup" in res.stdout, res.stdout
        wait_for(lambda: "a (self)  web-b  master" in ha(ca, "status").stdout)
        assert "a (self)  web-a  master" in ha(ca, "status").stdout
        res = ha(cb, "takeover", "--group", "nope")
        assert res.returncode == 1 and "no group 'nope'" in res.stderr, res.stderr
        assert ha(cb, "takeover").returncode == 0
        wait_for(lambda: "b (self)  web-b  master" in ha(cb, "status").stdout)
        a.terminate()
        b.terminate()
        assert a.wait(15) == 0 and b.wait(15) == 0


def test_check_config_names_bad_keys(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
[heartbeat]
auth_keys = { "x" = "" }
keepalive_interval = 1.0
dead_timeout = 0.5
vips = ["10.0.0.300/24"]
quorum = true
""")
    res = subprocess.run(hastack_argv("check-config", str(cfg)), capture_output=True, text=True)
    assert res.returncode != 0
    for key in ("auth_keys", "dead_timeout", "vips", "quorum"):
        assert f"[heartbeat].{key}" in res.stderr, res.stderr
