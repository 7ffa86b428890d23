"""[syslog]: the central log collector's config table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hastack.config import Address, ServiceConfig, setting


@dataclass(frozen=True, kw_only=True)
class SyslogConfig(ServiceConfig):
    """[syslog]: RFC 3164/5424 collector over UDP, TCP and TLS, storing files per host/program."""

    # ---- receiving
    # No listener is on by default (TOML cannot unset a key): name each one you want.
    udp_listen: Address | None = setting(
        None, help="UDP listener (RFC 5426; the standard port is 514)"
    )
    tcp_listen: Address | None = setting(
        None, help="TCP listener (RFC 6587 octet counting or LF/NUL framing)"
    )
    tls_listen: Address | None = setting(
        None, help="TLS listener (RFC 5425, octet counting; the standard port is 6514)"
    )
    tls_cert_file: Path | None = setting(None, help="PEM certificate chain for tls_listen")
    tls_key_file: Path | None = setting(None, help="PEM private key for tls_listen")
    tls_ca_file: Path | None = setting(
        None, help="if set, clients must present a certificate signed by these CAs (mutual TLS)"
    )
    unix_listen: Path | None = setting(
        None,
        help="a local datagram socket like /dev/log (syslog(3), logger -u, SysLogHandler(path))",
    )
    udp_rcvbuf_bytes: int = setting(
        16 * 1024 * 1024,
        min=65536,
        help="UDP SO_RCVBUF asked for (rsyslog imudp leaves the kernel default, ~208 KiB)",
    )
    max_message_bytes: int = setting(
        65536,
        min=480,
        max=16 * 1024 * 1024,
        help="longer messages are truncated (syslog-ng log-msg-size default 65536; "
        "rsyslog $MaxMessageSize 8096)",
    )
    max_connections: int = setting(1024, min=1, help="TCP+TLS connections served at once")
    idle_timeout: float = setting(
        3600.0, min=0.0, help="close a TCP connection silent this long (0: never)"
    )
    timezone: str = setting(
        "UTC", help="zone assumed for RFC 3164 timestamps, which carry none ('local' or IANA)"
    )

    # ---- storing
    data_dir: Path | None = setting(
        None, help="where log files go (default: [hastack].data_dir/syslog)"
    )
    path_template: str = setting(
        "{host}/{program}.log",
        help="file per message, relative to data_dir; fields {host} {program} {facility} "
        "{severity} {date}",
    )
    fsync: Literal["none", "interval", "batch"] = setting(
        "interval", help="none: page cache only; interval: every fsync_interval; batch: each write"
    )
    fsync_interval: float = setting(1.0, min=0.01, help="seconds between fsyncs (fsync=interval)")
    max_file_bytes: int = setting(
        100 * 1024 * 1024, min=4096, help="rotate a file when it would grow past this"
    )
    rotate_interval: float = setting(
        86400.0, min=0.0, help="rotate a file this many seconds after it was started (0: never)"
    )
    compress: bool = setting(True, help="gzip rotated files (in a background thread)")
    max_rotated_files: int = setting(7, min=0, help="rotated files kept per log file")
    max_rotated_age: float = setting(
        0.0, min=0.0, help="delete rotated files older than this many seconds (0: keep)"
    )
    max_open_files: int = setting(256, min=4, help="log files kept open at once (LRU)")
    max_pending_bytes: int = setting(
        32 * 1024 * 1024,
        min=65536,
        help="formatted lines waiting for the writer; beyond, UDP messages are dropped "
        "(counted) and TCP connections wait",
    )
    disk_retry_interval: float = setting(
        1.0, min=0.01, help="while the disk is full, retry writing this often"
    )

    # ---- forwarding
    forward: Address | None = setting(
        None, help="relay every message to this collector (RFC 5424, octet counting over TCP)"
    )
    forward_tls: bool = setting(False, help="relay over TLS (RFC 5425) instead of plain TCP")
    forward_tls_ca_file: Path | None = setting(
        None, help="CAs that sign the forward target's certificate (default: the system's)"
    )
    forward_tls_cert_file: Path | None = setting(
        None, help="client certificate for a target that wants mutual TLS"
    )
    forward_tls_key_file: Path | None = setting(None, help="key of forward_tls_cert_file")
    forward_max_queue_bytes: int = setting(
        256 * 1024 * 1024, min=65536, help="disk-backed forward queue bound; newer are dropped"
    )
    forward_reconnect_interval: float = setting(
        1.0, min=0.01, help="first reconnect delay to the forward target (doubles up to 30 s)"
    )

    # ---- reading
    peers: tuple[Address, ...] = setting(
        default_factory=tuple,
        help="admin addresses of other collectors that `hastack logs` also reads",
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        no_cert = self.tls_cert_file is None or self.tls_key_file is None
        if self.tls_listen is not None and no_cert:
            yield ("tls_listen", "needs tls_cert_file and tls_key_file")
        if (self.forward_tls_cert_file is None) != (self.forward_tls_key_file is None):
            yield ("forward_tls_cert_file", "give both forward_tls_cert_file and _key_file")
        listeners = (self.udp_listen, self.tcp_listen, self.tls_listen, self.unix_listen)
        if all(x is None for x in listeners):
            yield ("tcp_listen", "no listener: set udp/tcp/tls/unix_listen")
        try:
            self.path_template.format(host="h", program="p", facility="f", severity="s", date="d")
        except (KeyError, IndexError, ValueError) as exc:
            yield ("path_template", f"bad template: {exc!r}")
        if self.path_template.startswith("/") or ".." in self.path_template.split("/"):
            yield ("path_template", "must be relative and stay inside data_dir")
        if self.timezone != "local":
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                yield ("timezone", f"unknown time zone {self.timezone!r}")
