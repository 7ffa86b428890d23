"""`hastack run cache` as a subprocess: readiness, real clients, admin stats, SIGTERM -> exit 0."""

from __future__ import annotations

import json
import socket
import urllib.request

from pymemcache.client.base import Client

from hastack.testing import HastackProcess


def test_run_cache_serves_and_stops_cleanly(make_config) -> None:  # type: ignore[no-untyped-def]
    config = make_config(
        '[cache]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n'
        "max_memory_bytes = 8388608\nmax_connections = 64\n"
    )
    with HastackProcess(config, "cache") as proc:
        host, port = proc.addresses["listen"].rsplit(":", 1)
        client = Client((host, int(port)), default_noreply=False, timeout=10)
        assert client.set("proc:a", b"1")
        assert client.get("proc:a") == b"1"
        assert client.stats()[b"limit_maxbytes"] == 8388608
        client.close()
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"version\r\n")
            assert s.recv(100) == b"VERSION 1.6.18\r\n"
        admin = proc.addresses["admin"]
        with urllib.request.urlopen(f"http://{admin}/stats", timeout=10) as resp:
            stats = json.load(resp)["stats"]
        assert stats["get_hits"] == 1 and stats["curr_items"] == 1
        with urllib.request.urlopen(f"http://{admin}/health", timeout=10) as resp:
            health = json.load(resp)
        assert resp.status == 200 and health["accepting"] is True and health["curr_items"] == 1
        # an idle client connection must not hold up the graceful stop
        idle = socket.create_connection((host, int(port)), timeout=10)
        proc.terminate()
        assert proc.wait(30) == 0
        idle.close()
