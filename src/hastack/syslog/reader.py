"""Reading the collector's files back: filters, tail and grep (blocking; run in a thread).

Every stored line starts with its UTC timestamp in a fixed-width form, so lines from many
files (and many collectors) merge by comparing their first 27 characters.
"""

from __future__ import annotations

import fnmatch
import gzip
import heapq
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hastack.syslog.proto import SEVERITY_BY_NAME, format_ts, parse_line, parse_rfc3339

_ROTATED = re.compile(r".*\.\d{8}T\d{6}(?:-\d+)?(?:\.gz)?")
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
GREP_MAX_LINES = 100_000  # one request never holds more than this many lines


def parse_since(text: str, now: float | None = None) -> float:
    """``10m`` / ``2h`` / ``1d`` ago, an RFC 3339 time, ``YYYY-MM-DD``, or epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    m = _RELATIVE.fullmatch(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        text += "T00:00:00Z"
    elif re.fullmatch(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?", text):
        text = text.replace(" ", "T") + ("Z" if text.count(":") == 2 else ":00Z")
    value = parse_rfc3339(text)
    if value is None:
        raise ValueError(f"cannot read time {text!r} (use 10m, 2h, 1d, an ISO time or epoch)")
    return value


@dataclass(frozen=True)
class Filter:
    host: str | None = None  # fnmatch pattern
    program: str | None = None
    severity: int = 7  # this severity and more severe (lower numbers), like syslog.conf
    since: float | None = None
    pattern: re.Pattern[str] | None = None

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> Filter:
        sev = q.get("severity") or ""
        if sev and sev not in SEVERITY_BY_NAME and not sev.isdigit():
            raise ValueError(f"unknown severity {sev!r}")
        since = q.get("since") or ""
        pattern = q.get("pattern") or ""
        flags = re.IGNORECASE if q.get("ignore_case") in ("1", "true") else 0
        try:
            compiled = re.compile(pattern, flags) if pattern else None
        except re.error as exc:
            raise ValueError(f"bad pattern: {exc}") from None
        return cls(
            host=q.get("host") or None,
            program=q.get("program") or None,
            severity=(int(sev) if sev.isdigit() else SEVERITY_BY_NAME[sev]) if sev else 7,
            since=parse_since(since) if since else None,
            pattern=compiled,
        )

    def to_query(self) -> dict[str, str]:
        q: dict[str, str] = {}
        if self.host:
            q["host"] = self.host
        if self.program:
            q["program"] = self.program
        if self.severity != 7:
            q["severity"] = str(self.severity)
        if self.since is not None:
            q["since"] = repr(self.since)
        if self.pattern is not None:
            q["pattern"] = self.pattern.pattern
            if self.pattern.flags & re.IGNORECASE:
                q["ignore_case"] = "1"
        return q

    @property
    def since_text(self) -> str:
        return format_ts(self.since) if self.since is not None else ""

    def match_line(self, line: str) -> bool:
        if self.since is not None and line[:27] < self.since_text:
            return False
        if self.host is None and self.program is None and self.severity == 7:
            return self.pattern is None or self.pattern.search(line) is not None
        s = parse_line(line)
        if s is None:
            return False
        if self.host is not None and not fnmatch.fnmatchcase(s.host, self.host):
            return False
        if self.program is not None and not fnmatch.fnmatchcase(s.app, self.program):
            return False
        if s.severity_code > self.severity:
            return False
        return self.pattern is None or self.pattern.search(line) is not None


def _read_backwards(path: Path, block: int = 65536) -> Iterator[str]:
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + rest
            lines = data.split(b"\n")
            rest = lines.pop(0)
            for raw in reversed(lines):
                if raw:
                    yield raw.decode("utf-8", "backslashreplace") + "\n"
        if rest:
            yield rest.decode("utf-8", "backslashreplace") + "\n"


def _read_forwards(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield raw.decode("utf-8", "backslashreplace")


def _ts(line: str) -> str:
    return line[:27]


def merge_sorted(groups: Iterable[list[str]]) -> list[str]:
    return list(heapq.merge(*groups, key=_ts))


class LogReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self, *, rotated: bool) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.endswith(".tmp") or name.startswith("."):
                    continue
                if _ROTATED.fullmatch(name) and not rotated:
                    continue
                out.append(Path(dirpath) / name)
        return out

    def tail(self, flt: Filter, limit: int) -> list[str]:
        """The last ``limit`` matching lines (0: all since ``flt.since``) of the live files."""
        groups = []
        since = flt.since_text
        for path in self.files(rotated=False):
            got: list[str] = []
            try:
                for line in _read_backwards(path):
                    if since and line[:27] < since:
                        break
                    if flt.match_line(line):
                        got.append(line)
                        if limit and len(got) >= limit:
                            break
            except OSError:
                continue
            got.reverse()
            got.sort(key=_ts)
            groups.append(got)
        lines = merge_sorted(groups)
        return lines[-limit:] if limit else lines[-GREP_MAX_LINES:]

    def grep(self, flt: Filter, limit: int) -> list[str]:
        """Matching lines of every file, rotated and compressed ones included, by time."""
        groups = []
        total = 0
        cap = limit or GREP_MAX_LINES
        for path in self.files(rotated=True):
            got = []
            try:
                for line in _read_forwards(path):
                    if flt.match_line(line):
                        got.append(line)
            except (OSError, EOFError):
                continue
            got.sort(key=_ts)
            total += len(got)
            groups.append(got)
        lines = merge_sorted(groups)
        return lines[-cap:] if total > cap else lines
