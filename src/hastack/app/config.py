"""[app]: the example web application that sits behind the proxy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hastack.config import Address, ServiceConfig, setting


@dataclass(frozen=True, kw_only=True)
class AppConfig(ServiceConfig):
    """[app]: example application: a cached visit counter, a cached slow page, reproxied files."""

    listen: Address = setting(Address("127.0.0.1", 8081), help="where the proxy connects")
    cache_servers: tuple[Address, ...] = setting(
        (Address("127.0.0.1", 11211),), help="memcached-protocol servers (ketama over all)"
    )
    cache_ttl: int = setting(
        60, min=1, max=30 * 24 * 3600, help="seconds a /slow/N result stays in the cache"
    )
    cache_timeout: float = setting(
        0.5, min=0.01, help="per cache request; beyond it the page renders without the cache"
    )
    cache_retry_interval: float = setting(
        5.0, min=0.0, help="a failed cache server is skipped this long (libmemcached auto-eject)"
    )
    query_delay: float = setting(
        0.2, min=0.0, max=60, help="the pretend database query behind /slow/N takes this long"
    )
    files_dir: Path | None = setting(
        None, help="directory served at /files/NAME (by X-REPROXY-FILE); unset: /files is off"
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        if not self.cache_servers:
            yield ("cache_servers", "expected at least one 'host:port'")
