"""Interop with real emitters: util-linux logger, Python's SysLogHandler, rsyslog forwarding."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hastack.config import HostConfig
from hastack.core.logs import syslog_handler
from hastack.syslog.proto import parse_line
from hastack.syslog.server import SyslogService
from hastack.syslog.testing import all_lines, make_config, wait_for, wait_lines
from hastack.testing import free_port, require_binary, running_service

pytestmark = pytest.mark.peer


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[SyslogService]:
    host = HostConfig(name="t", run_dir=tmp_path / "run", data_dir=tmp_path / "data")
    async with running_service(SyslogService, make_config(tmp_path), host) as svc:
        yield svc


def port_of(svc: SyslogService, name: str) -> int:
    return int(svc.addresses()[name].rsplit(":", 1)[1])


async def logger(*args: str) -> None:
    require_binary("logger", "bsdutils")
    proc = await asyncio.create_subprocess_exec(
        "logger", *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out


def parsed(root: Path, needle: str) -> list:  # type: ignore[type-arg]
    return [parse_line(ln) for ln in all_lines(root) if needle in ln]


@pytest.mark.parametrize(
    ("mode", "args"),
    [
        ("udp-5424", ["-d", "--rfc5424"]),
        ("udp-3164", ["-d", "--rfc3164"]),
        ("tcp-5424", ["-T", "--rfc5424"]),
        ("tcp-3164", ["-T", "--rfc3164"]),
        ("tcp-octet", ["-T", "--octet-count", "--rfc5424"]),
        ("tcp-notq", ["-T", "--rfc5424=notq,notime,nohost"]),
        (
            "udp-sd",
            [
                "-d",
                "--rfc5424",
                "--sd-id",
                "zoo@123",
                "--sd-param",
                'tiger="hungry"',
                "--msgid",
                "M1",
            ],
        ),
    ],
)
async def test_util_linux_logger(collector: SyslogService, mode: str, args: list[str]) -> None:
    port = port_of(collector, "tcp" if "-T" in args else "udp")
    await logger(
        "-n", "127.0.0.1", "-P", str(port), "-t", "mytag", "-i", "-p", "local3.warning",
        "--socket-errors=on", *args, f"hello from logger {mode} ünïcode",
    )  # fmt: skip
    await wait_lines(collector.root, 1)
    (rec,) = parsed(collector.root, mode)
    assert rec.app == "mytag"
    assert (rec.facility, rec.severity) == ("local3", "warning")
    assert rec.message() == f"hello from logger {mode} ünïcode"
    assert "note=" not in rec.meta
    if "notq" not in mode:
        assert rec.host == socket.gethostname() or rec.host == socket.getfqdn()
        assert rec.procid.isdigit()
    if mode == "udp-sd":
        assert rec.msgid == "M1"
        assert 'zoo@123 tiger="hungry"' in rec.rest and "timeQuality" in rec.rest


async def test_logger_multiline_octet_counted_file(
    collector: SyslogService, tmp_path: Path
) -> None:
    src = tmp_path / "input.txt"
    src.write_text("line one\nline two\nline three\n")
    await logger("-n", "127.0.0.1", "-P", str(port_of(collector, "tcp")), "-T", "--octet-count",
                 "-t", "filetag", "-f", str(src))  # fmt: skip
    lines = await wait_lines(collector.root, 3)
    assert [parse_line(ln).message() for ln in lines] == ["line one", "line two", "line three"]  # type: ignore[union-attr]


@pytest.mark.parametrize("socktype", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
async def test_python_sysloghandler(collector: SyslogService, socktype: socket.SocketKind) -> None:
    name = "udp" if socktype == socket.SOCK_DGRAM else "tcp"

    def emit() -> None:
        handler = logging.handlers.SysLogHandler(
            address=("127.0.0.1", port_of(collector, name)),
            facility=logging.handlers.SysLogHandler.LOG_LOCAL1,
            socktype=socktype,
        )
        handler.ident = "pyapp[42]: "
        log = logging.getLogger(f"interop.{name}")
        log.propagate = False
        log.addHandler(handler)
        try:
            log.error("plain %s", name)
            log.warning("two\nlines %s", name)
        finally:
            log.removeHandler(handler)
            handler.close()

    await asyncio.to_thread(emit)
    lines = await wait_lines(collector.root, 2)
    recs = [parse_line(ln) for ln in lines]
    assert [(r.app, r.procid, r.severity, r.facility) for r in recs if r] == [
        ("pyapp", "42", "err", "local1"), ("pyapp", "42", "warning", "local1"),
    ]  # fmt: skip
    # NUL framing over TCP keeps the LF inside the message (stored escaped)
    assert recs[1] is not None and recs[1].message() == f"two#012lines {name}"


async def test_hastack_core_log_handler(collector: SyslogService) -> None:
    """What every hastack service sends when [hastack].syslog points here."""
    from hastack.config import Address

    def emit() -> None:
        h = syslog_handler("cache", Address("127.0.0.1", port_of(collector, "udp")), "web1")
        log = logging.getLogger("interop.core")
        log.propagate = False
        log.addHandler(h)
        try:
            log.warning("evicted %d items", 3)
        finally:
            log.removeHandler(h)
            h.close()

    await asyncio.to_thread(emit)
    (line,) = await wait_lines(collector.root, 1)
    rec = parse_line(line)
    assert rec is not None
    assert (rec.host, rec.app, rec.severity, rec.facility) == (
        "web1",
        "hastack-cache",
        "warning",
        "daemon",
    )
    assert rec.procid == str(os.getpid()) and rec.message() == "evicted 3 items"


# ---- rsyslog as a forwarder ---------------------------------------------------------------


RSYSLOG_CONF = """
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" port="{inport}" address="127.0.0.1")
input(type="imudp" port="{inport}" address="127.0.0.1")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
       template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
       template="RSYSLOG_ForwardFormat")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp"
       template="RSYSLOG_TraditionalForwardFormat")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp"
       template="RSYSLOG_SyslogProtocol23Format")
"""


async def test_rsyslog_forwarding_templates(collector: SyslogService, tmp_path: Path) -> None:
    rsyslogd = require_binary("rsyslogd", "rsyslog")
    work = tmp_path / "rsyslog"
    work.mkdir()
    inport = free_port()
    conf = work / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(
            work=work, inport=inport, tcp=port_of(collector, "tcp"), udp=port_of(collector, "udp")
        )
    )
    proc = await asyncio.create_subprocess_exec(
        rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # rsyslog has no readiness signal on loopback: send until the first copy arrives.
        async def poke() -> bool:
            probe = await asyncio.create_subprocess_exec(
                "logger", "-n", "127.0.0.1", "-P", str(inport), "-T", "-t", "probe", "ping",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.wait_for(probe.wait(), 30)  # fails until rsyslog listens
            return bool(all_lines(collector.root))

        deadline = asyncio.get_running_loop().time() + 30
        while not await poke():  # rsyslog has no readiness signal: probe until a copy arrives
            if asyncio.get_running_loop().time() > deadline or proc.returncode is not None:
                out = await proc.stdout.read() if proc.stdout else b""  # type: ignore[union-attr]
                raise AssertionError(f"rsyslog forwarded nothing: {out!r}")
            await asyncio.sleep(0.2)  # poll interval, not synchronisation
        await logger("-n", "127.0.0.1", "-P", str(inport), "-T", "--rfc5424", "-i",
                     "-t", "fwdapp", "-p", "local2.err", "forwarded via rsyslog")  # fmt: skip
        await logger("-n", "127.0.0.1", "-P", str(inport), "-d", "--rfc3164",
                     "-t", "bsdapp", "-p", "user.info", "3164 via rsyslog")  # fmt: skip
        await wait_for(lambda: len(parsed(collector.root, "via rsyslog")) >= 8, 30, "8 copies")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    for needle, app, sev in (("forwarded via", "fwdapp", "err"), ("3164 via", "bsdapp", "info")):
        recs = parsed(collector.root, needle)
        assert len(recs) == 4, recs
        for r in recs:
            assert r.app == app and r.severity == sev, r
            assert r.host == socket.gethostname() or r.host.startswith(socket.gethostname()), r
            assert r.message().endswith(
                needle.split()[0] + " via rsyslog"
            ) or r.message().startswith(needle), r
            assert "note=" not in r.meta, r


RSYSLOG_SINK = """
global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="fields" type="string"
         string="%HOSTNAME%|%APP-NAME%|%PROCID%|%MSGID%|%syslogfacility-text%.%syslogseverity-text%|%STRUCTURED-DATA%|%msg%\\n")
action(type="omfile" file="{out}" template="fields")
"""


async def test_forwarding_to_rsyslog(tmp_path: Path) -> None:
    """hastack relays RFC 5424 with octet counting; rsyslog (imtcp) reads every field back."""
    rsyslogd = require_binary("rsyslogd", "rsyslog")
    work = tmp_path / "rsyslog"
    work.mkdir()
    port = free_port()
    out = work / "out.log"
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_SINK.format(work=work, port=port, out=out))
    proc = await asyncio.create_subprocess_exec(
        rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    from hastack.config import Address

    host = HostConfig(name="t", run_dir=tmp_path / "run", data_dir=tmp_path / "data")
    cfg = make_config(tmp_path, forward=Address("127.0.0.1", port), forward_reconnect_interval=0.05)
    try:
        async with running_service(SyslogService, cfg, host) as relay:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.sendto(
                    b'<165>1 2026-11-28T08:00:00.5Z web1 nginx 77 ID9 [ex@1 k="v\\"q"] multi\nline',
                    ("127.0.0.1", port_of(relay, "udp")),
                )
                u.sendto(b"<14>pyapp[5]: from python\x00", ("127.0.0.1", port_of(relay, "udp")))
            await wait_for(lambda: out.exists() and out.read_text().count("\n") >= 2, 30, "rsyslog")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    lines = out.read_text().splitlines()
    assert lines[0] == 'web1|nginx|77|ID9|local4.notice|[ex@1 k="v\\"q"]|multi#012line'
    assert lines[1] == "127.0.0.1|pyapp|5|-|user.info|-|from python"


async def test_unix_socket_like_dev_log(tmp_path: Path) -> None:
    """`logger -u` and SysLogHandler(address=path) on a local datagram socket (no HOSTNAME)."""
    sock_path = tmp_path / "log.sock"
    host = HostConfig(name="thishost", run_dir=tmp_path / "run", data_dir=tmp_path / "data")
    cfg = make_config(tmp_path, udp_listen=None, tcp_listen=None, unix_listen=sock_path)
    async with running_service(SyslogService, cfg, host) as svc:
        assert svc.addresses()["unix"] == str(sock_path)
        await logger("-u", str(sock_path), "-t", "localtag", "-i", "via logger -u")

        def emit() -> None:
            h = logging.handlers.SysLogHandler(address=str(sock_path))
            h.ident = "pylocal: "
            log = logging.getLogger("interop.unix")
            log.propagate = False
            log.addHandler(h)
            try:
                log.warning("via SysLogHandler")
            finally:
                log.removeHandler(h)
                h.close()

        await asyncio.to_thread(emit)
        lines = await wait_lines(svc.root, 2)
    assert not sock_path.exists()  # removed on stop
    recs = [parse_line(ln) for ln in lines]
    got = sorted((r.host, r.app, r.message()) for r in recs if r)
    assert got == [
        ("thishost", "localtag", "via logger -u"),
        ("thishost", "pylocal", "via SysLogHandler"),
    ]
