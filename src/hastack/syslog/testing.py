"""Helpers shared by the syslog collector's tests and benchmark (not used at run time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hastack.config import Address
from hastack.syslog.config import SyslogConfig

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


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Blocking poll for a condition (threads and subprocess tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(0.02)


async def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.02)


async def wait_lines(root: Path, n: int, timeout: float = 20.0) -> list[str]:
    await wait_for(lambda: len(all_lines(root)) >= n, timeout, f"{n} lines under {root}")
    return all_lines(root)
