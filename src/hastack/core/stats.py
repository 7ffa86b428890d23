"""Per-service statistics: counters, gauges, JSON and Prometheus text.

Counters are objects with a plain ``value`` attribute, so a hot path pays one attribute
increment (``hits.value += 1``), not a method call or a lock (one event loop, one thread).
Gauges are callables evaluated only when someone asks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


class Counter:
    __slots__ = ("help", "name", "value")

    def __init__(self, name: str, help: str = "") -> None:
        self.name = name
        self.help = help
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class Stats:
    def __init__(self, service: str) -> None:
        self.service = service
        self.started = time.time()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, tuple[Callable[[], Any], str]] = {}

    def counter(self, name: str, help: str = "") -> Counter:
        if name in self._counters:
            return self._counters[name]
        c = self._counters[name] = Counter(name, help)
        return c

    def gauge(self, name: str, fn: Callable[[], Any], help: str = "") -> None:
        self._gauges[name] = (fn, help)

    def reset(self) -> None:
        for c in self._counters.values():
            c.value = 0

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime_seconds": round(time.time() - self.started, 3)}
        for name, c in self._counters.items():
            out[name] = c.value
        for name, (fn, _) in self._gauges.items():
            out[name] = fn()
        return out

    def prometheus(self) -> str:
        """Prometheus text exposition format 0.0.4; non-numeric gauges are skipped."""
        prefix = "hastack_" + _METRIC_NAME.sub("_", self.service) + "_"
        lines: list[str] = []

        def emit(name: str, kind: str, help_text: str, value: Any) -> None:
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, int | float):
                return
            metric = prefix + _METRIC_NAME.sub("_", name)
            if help_text:
                lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f"{metric} {value}")

        emit("uptime_seconds", "gauge", "seconds since start", time.time() - self.started)
        for name, c in self._counters.items():
            emit(name, "counter", c.help, c.value)
        for name, (fn, help_text) in self._gauges.items():
            emit(name, "gauge", help_text, fn())
        return "\n".join(lines) + "\n"
