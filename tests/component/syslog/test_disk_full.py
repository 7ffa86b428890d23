"""Disk full: stop writing, stay alive, report it, slow TCP senders, resume without loss."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.config import HostConfig
from hastack.syslog.server import SyslogService
from hastack.syslog.testing import all_lines, make_config, wait_for
from hastack.testing import running_service


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the disk-full test needs root to mount a tmpfs, and CI is set")
        pytest.skip("needs root to mount a 1 MiB tmpfs (mount -t tmpfs)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_disk_full_holds_tcp_and_resumes(
    tmp_path: Path, host: HostConfig, small_disk: Path
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 96 * 1024))  # leave ~96 KiB (tmpfs counts pages)
    cfg = make_config(
        tmp_path,
        data_dir=small_disk / "logs",
        disk_retry_interval=0.05,
        max_pending_bytes=64 * 1024,
    )
    async with running_service(SyslogService, cfg, host) as svc:
        _, port = svc.addresses()["tcp"].rsplit(":", 1)
        _, w = await asyncio.open_connection("127.0.0.1", int(port))
        n = 3000  # ~330 KiB of lines: several times what fits
        payload = b"".join(b"<13>1 - h app - - - seq=%06d %s\n" % (i, b"x" * 60) for i in range(n))

        async def send() -> None:
            w.write(payload)
            await w.drain()

        sender = asyncio.create_task(send())
        await wait_for(lambda: svc.health()[0] is False, what="health to report disk full")
        _, detail = svc.health()
        assert detail["disk_full"] is True
        assert svc.stats.snapshot()["disk_full"] == 1
        # The collector is alive, nothing more reaches the disk, the sender is held back.
        assert len(all_lines(svc.root)) < n
        assert not sender.done() or svc.stats.snapshot()["lines_queued"] < n
        # UDP cannot be slowed down: past max_pending_bytes it is dropped, and counted.
        host_, port_ = svc.addresses()["udp"].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(2000):
                u.sendto(b"<13>1 - u app - - - udp %d %s" % (i, b"z" * 100), (host_, int(port_)))
        await wait_for(lambda: svc.stats.snapshot()["udp_messages"] >= 1, what="UDP arrivals")
        await wait_for(lambda: svc.stats.snapshot()["udp_dropped_backlog"] > 0, what="UDP drops")
        filler.unlink()  # space returns
        await wait_for(
            lambda: sum(" h app " in ln for ln in all_lines(svc.root)) >= n, 60, "all TCP lines"
        )
        await asyncio.wait_for(sender, 30)
        await wait_for(lambda: svc.health()[0], what="health to recover")
        w.close()
    lines = [ln for ln in all_lines(cfg.data_dir) if " h app " in ln]  # type: ignore[arg-type]
    seqs = [ln.split("seq=")[1][:6] for ln in lines]
    assert seqs == [f"{i:06d}" for i in range(n)]  # all, in order, none twice, none torn
    assert all(ln.endswith("x" * 60) for ln in lines)
