"""Helpers shared by the syslog collector's tests and benchmark (not used at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hastack.config import Address
from hastack.syslog.config import SyslogConfig
from hastack.testing import poll_until
from hastack.testing import wait_until as async_wait_until

LOOPBACK = Address("127.0.0.1", 0)


def make_config(tmp_path: Path, **kw: Any) -> SyslogConfig:
    """A collector on loopback port 0 (UDP and TCP) writing under ``tmp_path/logs``."""
    base: dict[str, Any] = {
        "udp_listen": LOOPBACK,
        "tcp_listen": LOOPBACK,
        "data_dir": tmp_path / "logs",
        "fsync": "none",
        "idle_timeout": 0.0,
    }
    base.update(kw)
    return SyslogConfig(**base)


def log_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.parts)
    )


def all_lines(root: Path) -> list[str]:
    out: list[str] = []
    for p in log_files(root):
        if not p.name.endswith(".gz"):
            out += p.read_text(errors="replace").splitlines()
    return out


# Blocking and asyncio condition waits (the shared harness's; names kept for these tests).
wait_until = poll_until
wait_for = async_wait_until


async def wait_lines(root: Path, n: int, timeout: float = 20.0) -> list[str]:
    await wait_for(lambda: len(all_lines(root)) >= n, timeout, f"{n} lines under {root}")
    return all_lines(root)
