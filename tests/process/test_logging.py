"""Every service logs to stderr and, with [hastack].syslog set, to the syslog collector."""

from __future__ import annotations

import re
import socket

from hastack.testing import HastackProcess


def test_service_logs_reach_the_configured_syslog_collector(make_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        port = collector.getsockname()[1]
        config = make_config(
            f"""
[hastack]
name = "loghost-test"
run_dir = "{tmp_path / "run"}"
data_dir = "{tmp_path / "data"}"
syslog = "127.0.0.1:{port}"

[echo]
listen = "127.0.0.1:0"
"""
        )
        with HastackProcess(config, "echo") as proc:
            datagram = collector.recv(4096)
        assert "echo ready" in proc.output()  # stderr too
    # RFC 3164: <PRI>TIMESTAMP HOST TAG[PID]: MSG ; daemon.info = 3*8+6 = 30
    line = datagram.decode().rstrip("\x00")
    assert re.fullmatch(
        r"<30>\w{3} [ \d]\d \d\d:\d\d:\d\d loghost-test hastack-echo\[\d+\]: echo ready: .*", line
    ), line
