"""`hastack run SERVICE`: readiness, graceful SIGTERM, forced second signal, bad config."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from hastack.testing import HastackProcess, hastack_argv


def test_run_announces_readiness_and_exits_0_on_sigterm(make_config) -> None:  # type: ignore[no-untyped-def]
    config = make_config('[echo]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n')
    with HastackProcess(config, "echo") as proc:
        host, port = proc.addresses["listen"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"ping\n")
            assert s.recv(100) == b"test-host ping\n"
        assert "admin" in proc.addresses
        proc.terminate()
        assert proc.wait(15) == 0
    assert "echo stopped" in proc.output()


def test_second_signal_forces_exit(make_config, plugin_env) -> None:  # type: ignore[no-untyped-def]
    # `stuck` never finishes draining, so only the second signal can end the stop (exit 1).
    config = make_config('[stuck]\nlisten = "127.0.0.1:0"\nshutdown_timeout = 300.0\n')
    with HastackProcess(config, "stuck", env=plugin_env) as proc:
        proc.signal(signal.SIGTERM)
        proc.wait_for_log("stuck: received SIGTERM, stopping", 15)
        proc.signal(signal.SIGINT)
        assert proc.wait(15) == 1
    assert "second signal" in proc.output()


def test_run_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[echo]\nlisten = 7\n")
    done = subprocess.run(
        hastack_argv("run", "echo", "--config", str(config)), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"{config}: [echo].listen: expected a string 'host:port', got 7 (integer)" in done.stderr
