"""Logging set-up shared by every service process: stderr, and optionally the syslog collector.

Records sent to the collector are RFC 3164 lines tagged ``hastack-<service>[pid]`` so that
``hastack logs tail --program hastack-cache`` finds them.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time

from hastack.config import Address

_STDERR_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


def syslog_handler(service: str, address: Address, hostname: str) -> logging.Handler:
    """A UDP SysLogHandler whose lines carry an RFC 3164 timestamp, host and tag."""
    handler = logging.handlers.SysLogHandler(
        address=(address.host, address.port),
        facility=logging.handlers.SysLogHandler.LOG_DAEMON,
        socktype=socket.SOCK_DGRAM,
    )
    tag = f"hastack-{service}[{os.getpid()}]"
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {hostname} {tag}: %(message)s", "%b %d %H:%M:%S")
    )
    return handler


def setup_logging(
    service: str, level: str = "info", syslog: Address | None = None, hostname: str | None = None
) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_UTCFormatter(_STDERR_FORMAT))
    root.addHandler(stderr)
    if syslog is not None:
        root.addHandler(syslog_handler(service, syslog, hostname or socket.gethostname()))
    root.setLevel(level.upper())
    # aiohttp's access log would put a line per admin request on stderr.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
