"""The collector in-process on real loopback sockets."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import socket
from pathlib import Path

import aiohttp
import pytest

from hastack.config import Address, HostConfig
from hastack.core.admin import AdminServer
from hastack.syslog.proto import frame_octet_counted, parse_line
from hastack.syslog.server import SyslogService
from hastack.syslog.testing import all_lines, make_config, wait_for, wait_lines
from hastack.testing import free_port, running_service


def addr(svc: SyslogService, name: str) -> tuple[str, int]:
    host, _, port = svc.addresses()[name].rpartition(":")
    return host, int(port)


async def test_udp_and_tcp_framings_land_in_files(collector: SyslogService) -> None:
    root = collector.root
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"<134>1 2026-11-28T08:00:00Z web1 nginx 12 - - udp one", addr(collector, "udp"))
    _reader, writer = await asyncio.open_connection(*addr(collector, "tcp"))
    writer.write(b"<13>Nov 28 08:00:01 web2 app[7]: lf framed\n")
    await writer.drain()
    _r2, w2 = await asyncio.open_connection(*addr(collector, "tcp"))
    w2.write(frame_octet_counted(b"<13>1 - web3 app - - - multi\nline"))
    _r3, w3 = await asyncio.open_connection(*addr(collector, "tcp"))
    w3.write(b"<14>pyapp: nul framed\x00")
    lines = await wait_lines(root, 4)
    for w in (writer, w2, w3):
        w.close()
    assert (root / "web1" / "nginx.log").exists()
    assert (root / "web2" / "app.log").exists()
    assert (root / "web3" / "app.log").exists()
    assert (root / "127.0.0.1" / "pyapp.log").exists()
    text = "\n".join(lines)
    assert "multi#012line" in text and "nul framed" in text
    snap = collector.stats.snapshot()
    assert snap["messages_received"] == 4 and snap["udp_messages"] == 1
    assert snap["udp_kernel_drops"] >= 0


async def test_garbage_is_stored_raw_with_note(collector: SyslogService) -> None:
    _, w = await asyncio.open_connection(*addr(collector, "tcp"))
    w.write(b"not syslog at all\n<999>bad pri\n")
    lines = await wait_lines(collector.root, 2)
    w.close()
    assert any("note=no-pri" in ln and "not syslog at all" in ln for ln in lines)
    assert any("note=bad-pri" in ln for ln in lines)


async def test_oversize_message_truncated_connection_survives(
    tmp_path: Path, host: HostConfig
) -> None:
    cfg = make_config(tmp_path, max_message_bytes=1000)
    async with running_service(SyslogService, cfg, host) as svc:
        _, w = await asyncio.open_connection(*addr(svc, "tcp"))
        w.write(b"<13>" + b"x" * 5000 + b"\n<13>after\n")
        lines = await wait_lines(svc.root, 2)
        w.close()
    assert any("truncated" in ln for ln in lines)
    assert lines[-1].endswith(" after") or any(ln.endswith(" after") for ln in lines)


async def test_path_template_sanitises_network_names(tmp_path: Path, host: HostConfig) -> None:
    cfg = make_config(tmp_path, path_template="{facility}/{host}-{program}.log")
    async with running_service(SyslogService, cfg, host) as svc:
        _, w = await asyncio.open_connection(*addr(svc, "tcp"))
        w.write(b"<134>1 - ../../etc passwd - - - x\n")
        await wait_lines(svc.root, 1)
        w.close()
        files = [p for p in svc.root.rglob("*") if p.is_file()]
    assert [p.relative_to(svc.root).as_posix() for p in files] == ["local0/_._.._etc-passwd.log"]


async def test_rotation_compression_retention(tmp_path: Path, host: HostConfig) -> None:
    cfg = make_config(tmp_path, max_file_bytes=4096, max_rotated_files=2)
    async with running_service(SyslogService, cfg, host) as svc:
        _, w = await asyncio.open_connection(*addr(svc, "tcp"))
        for i in range(200):
            w.write(b"<13>1 - h app - - - message number %d padding padding padding\n" % i)
            await w.drain()
            if i % 40 == 39:
                await wait_for(lambda i=i: svc.stats.snapshot()["lines_queued"] >= i + 1)
                await wait_for(lambda: not svc.writer or svc.writer.idle.is_set())
        await wait_for(lambda: svc.stats.snapshot()["lines_queued"] >= 200)
        w.close()

        def gz_files() -> list[Path]:
            return sorted((svc.root / "h").glob("app.log.*.gz"))

        await wait_for(lambda: svc.store.rotations >= 2 and len(gz_files()) >= 1)
    assert len(list((svc.root / "h").glob("app.log.*"))) <= 2
    assert (svc.root / "h" / "app.log").stat().st_size <= 4096
    with gzip.open(gz_files()[0], "rt") as f:
        assert parse_line(f.readline()) is not None


async def test_admin_logs_tail_grep_and_follow(tmp_path: Path, host: HostConfig) -> None:
    async with running_service(SyslogService, make_config(tmp_path), host) as svc:
        admin = AdminServer(svc, Address("127.0.0.1", 0))
        await admin.start()
        try:
            _, w = await asyncio.open_connection(*addr(svc, "tcp"))
            w.write(b"<11>1 2026-11-28T08:00:02Z h1 db - - - disk error\n")
            w.write(b"<14>1 2026-11-28T08:00:01Z h2 web - - - hello\n")
            w.write(b"<14>1 2026-11-28T08:00:03Z h1 web - - - world\n")
            await wait_lines(svc.root, 3)
            base = f"http://{admin.address}/logs"
            async with aiohttp.ClientSession() as http:
                async with http.get(base) as r:
                    text = await r.text()
                msgs = [ln.rsplit(" ", 1)[-1] for ln in text.splitlines()]
                assert msgs == ["hello", "error", "world"]  # merged by time across files
                async with http.get(base, params={"severity": "err"}) as r:
                    assert "disk error" in await r.text()
                    assert "hello" not in await r.text()
                async with http.get(
                    base, params={"mode": "grep", "pattern": "WOR", "ignore_case": "1"}
                ) as r:
                    assert [ln.endswith("world") for ln in (await r.text()).splitlines()] == [True]
                async with http.get(base, params={"host": "h1", "program": "web"}) as r:
                    assert (await r.text()).count("\n") == 1
                for bad in (
                    {"severity": "bogus"},
                    {"limit": "x"},
                    {"mode": "rm"},
                    {"pattern": "("},
                ):
                    async with http.get(base, params=bad) as r:
                        assert r.status == 400, bad
                async with http.get(
                    base, params={"follow": "1", "history": "0", "program": "web"}
                ) as r:
                    await wait_for(lambda: svc.subscribers)
                    w.write(b"<14>1 - h3 web - - - live line\n<14>1 - h3 other - - - filtered\n")
                    line = await asyncio.wait_for(r.content.readline(), 20)
                    assert line.decode().endswith("live line\n")
            w.close()
        finally:
            await admin.stop()


async def test_graceful_stop_writes_everything(tmp_path: Path, host: HostConfig) -> None:
    cfg = make_config(tmp_path)
    svc = SyslogService(cfg, host)
    await svc.start()
    _, w = await asyncio.open_connection(*addr(svc, "tcp"))
    payload = b"".join(b"<13>1 - h a - - - n%d\n" % i for i in range(5000))
    w.write(payload)
    await w.drain()
    await wait_for(lambda: svc.stats.snapshot()["lines_queued"] >= 5000)
    await svc.stop()
    w.close()
    assert len(all_lines(cfg.data_dir)) == 5000  # type: ignore[arg-type]


async def test_idle_connections_are_closed(tmp_path: Path, host: HostConfig) -> None:
    async with running_service(SyslogService, make_config(tmp_path, idle_timeout=0.2), host) as svc:
        r, w = await asyncio.open_connection(*addr(svc, "tcp"))
        w.write(b"<13>1 - h a - - - hi\n")
        assert await asyncio.wait_for(r.read(), 20) == b""  # closed by the collector
        assert svc.stats.snapshot()["idle_closed"] == 1
        w.close()
    assert all_lines(svc.root)[0].endswith(" hi")


async def test_logs_cli_merges_collectors_by_time(
    tmp_path: Path, host: HostConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hastack logs` against two collectors: one time-ordered stream; a dead one is reported."""
    from hastack.syslog import cli

    async with (
        running_service(SyslogService, make_config(tmp_path / "a"), host) as a,
        running_service(SyslogService, make_config(tmp_path / "b"), host) as b,
    ):
        admins = [AdminServer(a, Address("127.0.0.1", 0)), AdminServer(b, Address("127.0.0.1", 0))]
        for adm in admins:
            await adm.start()
        try:
            for svc, stamps in ((a, (1, 3, 5)), (b, (2, 4))):
                _, w = await asyncio.open_connection(*addr(svc, "tcp"))
                for sec in stamps:
                    w.write(b"<14>1 2026-11-28T08:00:0%dZ h app - - - at %d\n" % (sec, sec))
                await wait_lines(svc.root, len(stamps))
                w.close()
            dead = Address("127.0.0.1", free_port())
            addrs = [adm.address for adm in admins if adm.address is not None] + [dead]
            args = cli_args(cli, ["logs", "tail", "-n", "4"])
            assert await cli.run_logs(args, addrs, cli.build_query(args)) == 0
            out, err = capsys.readouterr()
            assert [ln.rsplit(" ", 1)[-1] for ln in out.splitlines()] == ["2", "3", "4", "5"]
            assert str(dead) in err
            args = cli_args(cli, ["logs", "grep", "at [13]", "--short"])
            assert await cli.run_logs(args, addrs[:2], cli.build_query(args)) == 0
            out, _ = capsys.readouterr()
            assert out.splitlines() == [
                "2026-11-28T08:00:01.000000Z h app: at 1",
                "2026-11-28T08:00:03.000000Z h app: at 3",
            ]
        finally:
            for adm in admins:
                await adm.stop()


def cli_args(cli: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="unused.toml")
    sub = parser.add_subparsers()
    cli.register(sub)  # type: ignore[attr-defined]
    return parser.parse_args(argv)
