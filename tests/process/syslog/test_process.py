"""`hastack run syslog` as a subprocess: kill -9 during a TCP stream, and `hastack logs`."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from hastack.syslog.proto import parse_line
from hastack.syslog.testing import all_lines, wait_until
from hastack.testing import HastackProcess, free_port, hastack_argv, write_config


def config(tmp_path: Path) -> tuple[Path, int, int]:
    port, admin = free_port(), free_port()
    path = write_config(
        tmp_path,
        f"""
[syslog]
udp_listen = "127.0.0.1:{port}"
tcp_listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
data_dir = "{tmp_path / "logs"}"
fsync = "interval"
""",
    )
    return path, port, admin


def test_kill_9_during_tcp_stream_keeps_lines_whole_and_unique(tmp_path: Path) -> None:
    path, port, _ = config(tmp_path)
    root = tmp_path / "logs"
    sent = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal sent
        with socket.create_connection(("127.0.0.1", port)) as s:
            try:
                while not stop.is_set():
                    batch = b"".join(
                        b"<13>1 - h app - - - seq=%08d %s\n" % (sent + i, b"y" * 100)
                        for i in range(100)
                    )
                    s.sendall(batch)
                    sent += 100
            except OSError:
                pass  # the collector was killed

    with HastackProcess(path, "syslog") as proc:
        t = threading.Thread(target=stream, daemon=True)
        t.start()
        wait_until(lambda: len(all_lines(root)) >= 20_000, 60, "20k lines on disk")
        proc.kill()
        proc.wait()
    stop.set()
    t.join(30)
    raw = (root / "h" / "app.log").read_bytes()
    # Restart: a partial last line (if the kill cut a write) is cut off, then writing goes on.
    with HastackProcess(path, "syslog"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>1 - h app - - - after restart\n")
        wait_until(lambda: all_lines(root)[-1:] and all_lines(root)[-1].endswith("restart"), 30)
    lines = all_lines(root)
    assert lines[-1].endswith("after restart")
    seqs = []
    for ln in lines[:-1]:
        rec = parse_line(ln)
        assert rec is not None and ln.endswith("y" * 100), ln
        seqs.append(int(ln.split("seq=")[1][:8]))
    # TCP delivers in order: what was written is a prefix of what was sent, once each.
    assert seqs == list(range(len(seqs)))
    assert len(seqs) >= 20_000 and len(seqs) <= sent
    assert raw[: raw.rfind(b"\n") + 1].count(b"\n") == len(seqs)  # restart lost nothing whole


def test_run_and_logs_cli(tmp_path: Path) -> None:
    path, port, _ = config(tmp_path)
    with HastackProcess(path, "syslog") as proc:
        assert proc.addresses["tcp"] == f"127.0.0.1:{port}"
        assert proc.addresses["udp"] == f"127.0.0.1:{port}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"<11>1 2026-11-28T08:00:02Z h1 db - - - disk error", ("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<14>1 2026-11-28T08:00:01Z h2 web - - - hello\n")
        wait_until(lambda: len(all_lines(tmp_path / "logs")) >= 2, 30)

        def logs(*args: str) -> str:
            out = subprocess.run(
                hastack_argv("logs", *args, "--config", str(path)),
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            return out.stdout

        out = logs("tail", "-n", "5")
        assert [ln.rsplit(" ", 1)[-1] for ln in out.splitlines()] == ["hello", "error"]
        assert logs("tail", "--severity", "err", "--short").splitlines() == [
            "2026-11-28T08:00:02.000000Z h1 db: disk error"
        ]
        assert "hello" in logs("grep", "HEL", "-i", "--host", "h2")
        assert logs("grep", "nomatch") == ""
        # -f prints new lines as they arrive
        follow = subprocess.Popen(
            hastack_argv("logs", "tail", "-f", "--program", "live", "--config", str(path)),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            got: list[str] = []

            def read() -> None:
                assert follow.stdout is not None
                got.append(follow.stdout.readline())

            reader = threading.Thread(target=read, daemon=True)
            reader.start()

            # repeat until the follower is connected and sees one
            def sent_and_seen() -> bool:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.sendto(b"<14>1 - h3 live - - - streamed", ("127.0.0.1", port))
                reader.join(0.2)
                return bool(got)

            wait_until(sent_and_seen, 30, "a followed line")
            assert got[0].endswith("streamed\n")
        finally:
            follow.terminate()
            follow.wait(10)
    assert proc.wait() == 0
