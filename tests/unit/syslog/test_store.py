"""Store, forward spool, reader and config: blocking helpers tested directly on tmp dirs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hastack.config import loads_config
from hastack.errors import ConfigError
from hastack.syslog.forward import ForwardSpool, complete_frames
from hastack.syslog.proto import frame_octet_counted
from hastack.syslog.reader import Filter, LogReader, parse_since
from hastack.syslog.store import Store, finish_rotated, render_path, safe_component

NOW = 1_800_000_000.0


def line(ts: str, host: str = "h", app: str = "a", sev: str = "info", msg: str = "m") -> bytes:
    return f"{ts} {host} {app} - - user.{sev} fmt=5424,src=1.2.3.4 - {msg}\n".encode()


def store(root: Path, **kw: object) -> Store:
    args: dict[str, object] = dict(
        max_file_bytes=1 << 20, rotate_interval=0.0, max_open_files=4, fsync="none",
        fsync_interval=1.0,
    )  # fmt: skip
    args.update(kw)
    return Store(root, **args)  # type: ignore[arg-type]


def test_safe_components() -> None:
    assert safe_component("../etc") == "_._etc"
    assert safe_component("") == "unknown"
    assert safe_component("a/b c") == "a_b_c"
    assert (
        render_path("{host}/{program}.log", "web1", None, "user", "info", "") == "web1/unknown.log"
    )


def test_partial_last_line_is_cut_on_open(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "a.log").write_bytes(line("2026-11-28T08:00:00.000000Z") + b"2026-11-28T08:0")
    s = store(tmp_path)
    s.write({"h/a.log": [line("2026-11-28T08:00:01.000000Z")]}, NOW)
    s.close()
    text = (tmp_path / "h" / "a.log").read_text().splitlines()
    assert [t[:27] for t in text] == ["2026-11-28T08:00:00.000000Z", "2026-11-28T08:00:01.000000Z"]
    assert s.repaired_files == 1


def test_size_rotation_and_retention(tmp_path: Path) -> None:
    rotated: list[tuple[Path, str]] = []
    s = store(tmp_path, max_file_bytes=200, on_rotated=lambda p, n: rotated.append((p, n)))
    for i in range(12):
        s.write({"a.log": [line(f"2026-11-28T08:00:{i:02d}.000000Z")]}, NOW + i)
    s.close()
    assert len(rotated) >= 4
    for p, name in rotated:
        finish_rotated(p, name, compress=True, max_rotated_files=2, max_rotated_age=0, now=NOW)
    left = sorted(x.name for x in tmp_path.iterdir())
    assert left[0] == "a.log" and len(left) == 3 and all(x.endswith(".gz") for x in left[1:])
    with gzip.open(tmp_path / left[-1]) as f:
        assert f.read().endswith(b"m\n")


def test_time_rotation(tmp_path: Path) -> None:
    rotated: list[Path] = []
    s = store(tmp_path, rotate_interval=60.0, on_rotated=lambda p, n: rotated.append(p))
    s.write({"a.log": [line("2027-01-15T08:00:00.000000Z")]}, NOW)
    s.write({"a.log": [line("2027-01-15T08:00:30.000000Z")]}, NOW + 30)
    assert rotated == []
    s.write({"a.log": [line("2027-01-15T08:01:01.000000Z")]}, NOW + 61)
    assert len(rotated) == 1
    s.close()


def test_fsync_batch_mode_counts(tmp_path: Path) -> None:
    s = store(tmp_path, fsync="batch")
    s.write(
        {
            "a.log": [line("2026-11-28T08:00:00.000000Z")],
            "b.log": [line("2026-11-28T08:00:00.000000Z")],
        },
        NOW,
    )
    assert s.fsyncs == 2
    s.close()


def test_forward_spool_resumes_and_bounds(tmp_path: Path) -> None:
    frames = [frame_octet_counted(b"<13>1 - h a - - - n%d" % i) for i in range(10)]
    sp = ForwardSpool(tmp_path, max_bytes=10_000, segment_bytes=100)
    sp.append(frames[:5])
    sp.append(frames[5:])
    got = sp.read(60)
    assert got and complete_frames(got) == len(got)
    sp.ack(len(got), 2)
    sp.close()
    again = ForwardSpool(tmp_path, max_bytes=10_000, segment_bytes=100)  # a restart
    rest = b""
    while chunk := again.read(1000):
        rest += chunk
        again.ack(len(chunk), 0)
    assert got + rest == b"".join(frames)
    assert again.queued == 0
    again.close()
    small = ForwardSpool(tmp_path / "small", max_bytes=len(frames[0]) * 3)
    small.append(frames[:2])
    small.append(frames[2:4])  # would exceed the bound: dropped, counted
    assert small.dropped == 2 and small.queued == len(frames[0]) * 2
    small.close()


def test_reader_filters_and_merge(tmp_path: Path) -> None:
    (tmp_path / "h1").mkdir()
    (tmp_path / "h2").mkdir()
    (tmp_path / "h1" / "db.log").write_bytes(
        line("2026-11-28T08:00:01.000000Z", "h1", "db", "err", "one")
        + line("2026-11-28T08:00:03.000000Z", "h1", "db", "info", "three")
    )
    (tmp_path / "h2" / "web.log").write_bytes(
        line("2026-11-28T08:00:02.000000Z", "h2", "web", msg="two")
    )
    with gzip.open(tmp_path / "h2" / "web.log.20261127T000000.gz", "wb") as f:
        f.write(line("2026-11-27T08:00:00.000000Z", "h2", "web", msg="old"))
    r = LogReader(tmp_path)
    tail = r.tail(Filter(), 10)
    assert [t.split()[-1] for t in tail] == ["one", "two", "three"]
    assert [t.split()[-1] for t in r.tail(Filter(), 2)] == ["two", "three"]
    assert [t.split()[-1] for t in r.tail(Filter(severity=3), 10)] == ["one"]
    assert [t.split()[-1] for t in r.grep(Filter(host="h2"), 0)] == ["old", "two"]
    since = parse_since("2026-11-28T08:00:02Z")
    assert [t.split()[-1] for t in r.grep(Filter(since=since), 0)] == ["two", "three"]
    assert Filter.from_query({"severity": "warning", "program": "d*"}).severity == 4


def test_parse_since() -> None:
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("2h", now=10_000.0) == 2800.0
    assert parse_since("1700000000") == 1_700_000_000.0
    assert parse_since("2026-11-28") == parse_since("2026-11-28T00:00:00Z")
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_config_validation_names_keys() -> None:
    with pytest.raises(ConfigError) as err:
        loads_config(
            '[syslog]\ntls_listen = "127.0.0.1:6514"\npath_template = "../{host}"\n'
            'timezone = "Mars/Base"\n'
        )
    text = str(err.value)
    for key in ("tls_listen", "path_template", "timezone"):
        assert f"[syslog].{key}" in text or key in text
    ok = loads_config('[syslog]\nudp_listen = "127.0.0.1:5514"\nfsync = "batch"\n')
    assert ok.services["syslog"].fsync == "batch"  # type: ignore[attr-defined]
