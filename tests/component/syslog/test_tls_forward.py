"""TLS (RFC 5425) and forwarding to another collector, in-process."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from hastack.config import Address, HostConfig
from hastack.syslog.proto import frame_octet_counted, parse_line
from hastack.syslog.server import SyslogService
from hastack.syslog.testing import all_lines, make_config, wait_for, wait_lines
from hastack.testing import free_port, require_binary, running_service


def addr(svc: SyslogService, name: str) -> tuple[str, int]:
    host, _, port = svc.addresses()[name].rpartition(":")
    return host, int(port)


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    require_binary("openssl", "openssl")
    crt, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


async def test_tls_octet_counted(tmp_path: Path, host: HostConfig, cert: tuple[Path, Path]) -> None:
    crt, key = cert
    cfg = make_config(
        tmp_path, tls_listen=Address("127.0.0.1", 0), tls_cert_file=crt, tls_key_file=key
    )
    async with running_service(SyslogService, cfg, host) as svc:
        ctx = ssl.create_default_context(cafile=str(crt))
        _, w = await asyncio.open_connection(
            *addr(svc, "tls"), ssl=ctx, server_hostname="localhost"
        )
        w.write(frame_octet_counted(b"<165>1 - tlshost app - - - over tls\nwith lf"))
        await w.drain()
        lines = await wait_lines(svc.root, 1)
        w.close()
        await w.wait_closed()
    assert lines[0].endswith("over tls#012with lf")
    assert (svc.root / "tlshost" / "app.log").exists()


async def test_mutual_tls_rejects_clients_without_cert(
    tmp_path: Path, host: HostConfig, cert: tuple[Path, Path]
) -> None:
    crt, key = cert
    cfg = make_config(
        tmp_path,
        tls_listen=Address("127.0.0.1", 0),
        tls_cert_file=crt,
        tls_key_file=key,
        tls_ca_file=crt,
    )
    async with running_service(SyslogService, cfg, host) as svc:
        anon = ssl.create_default_context(cafile=str(crt))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            r, w = await asyncio.open_connection(
                *addr(svc, "tls"), ssl=anon, server_hostname="localhost"
            )
            w.write(frame_octet_counted(b"<13>1 - h a - - - x"))
            await w.drain()
            await asyncio.wait_for(r.read(), 20)  # TLS 1.3: the alert arrives on read
            raise ConnectionError("closed")
        mutual = ssl.create_default_context(cafile=str(crt))
        mutual.load_cert_chain(crt, key)
        _, w = await asyncio.open_connection(
            *addr(svc, "tls"), ssl=mutual, server_hostname="localhost"
        )
        w.write(frame_octet_counted(b"<13>1 - h a - - - with cert"))
        await w.drain()
        lines = await wait_lines(svc.root, 1)
        w.close()
    assert lines == [ln for ln in lines if ln.endswith("with cert")]


async def test_forwarding_survives_upstream_down(tmp_path: Path, host: HostConfig) -> None:
    up_port = free_port()
    up_cfg = make_config(tmp_path / "up", tcp_listen=Address("127.0.0.1", up_port), udp_listen=None)
    cfg = make_config(
        tmp_path / "relay", forward=Address("127.0.0.1", up_port), forward_reconnect_interval=0.05
    )
    async with running_service(SyslogService, cfg, host) as relay:
        _, w = await asyncio.open_connection(*addr(relay, "tcp"))
        async with running_service(SyslogService, up_cfg, host) as up:
            w.write(b'<134>1 2026-11-28T08:00:00.5Z web1 nginx 99 ID1 [a@1 k="v"] first\n')
            lines = await wait_lines(up.root, 1)
            s = parse_line(lines[0])
            assert s is not None
            assert (s.ts_text, s.host, s.app, s.procid, s.msgid) == (
                "2026-11-28T08:00:00.500000Z", "web1", "nginx", "99", "ID1",
            )  # fmt: skip
            assert s.rest == '[a@1 k="v"] first'
        # upstream down: the relay queues on disk
        for i in range(100):
            w.write(b"<14>1 - web1 app - - - queued %d\n" % i)
        await w.drain()
        await wait_for(lambda: relay.stats.snapshot()["lines_queued"] >= 101)
        await wait_for(lambda: relay.stats.snapshot()["forward_queue_bytes"] > 0)
        async with running_service(SyslogService, up_cfg, host) as up:
            await wait_lines(up.root, 101, timeout=30)
            got = [ln.rsplit(" ", 1)[-1] for ln in all_lines(up.root) if "queued" in ln]
            assert sorted(got, key=int) == [str(i) for i in range(100)]
        w.close()
        assert relay.stats.snapshot()["forward_dropped"] == 0


async def test_forwarding_over_mutual_tls(
    tmp_path: Path, host: HostConfig, cert: tuple[Path, Path]
) -> None:
    crt, key = cert
    up_cfg = make_config(
        tmp_path / "up",
        udp_listen=None,
        tcp_listen=None,
        tls_listen=Address("127.0.0.1", 0),
        tls_cert_file=crt,
        tls_key_file=key,
        tls_ca_file=crt,
    )
    async with running_service(SyslogService, up_cfg, host) as up:
        _, port = up.addresses()["tls"].rsplit(":", 1)
        cfg = make_config(
            tmp_path / "relay",
            forward=Address("localhost", int(port)),
            forward_tls=True,
            forward_tls_ca_file=crt,
            forward_tls_cert_file=crt,
            forward_tls_key_file=key,
            forward_reconnect_interval=0.05,
        )
        async with running_service(SyslogService, cfg, host) as relay:
            _, w = await asyncio.open_connection(*addr(relay, "tcp"))
            w.write(b"<134>1 - web1 nginx - - - relayed over tls\n")
            (line,) = await wait_lines(up.root, 1)
            w.close()
            assert relay.stats.snapshot()["forward_connected"] == 1
    assert line.endswith(" web1 nginx - - local0.info fmt=5424,src=127.0.0.1 - relayed over tls")
