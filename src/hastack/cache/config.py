"""[cache]: the memcached-compatible cache server's configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hastack.config import Address, ServiceConfig, setting


@dataclass(frozen=True, kw_only=True)
class CacheConfig(ServiceConfig):
    """[cache]: memcached-compatible cache server (text + meta protocol of memcached 1.6.18)."""

    listen: Address = setting(Address("127.0.0.1", 11211), help="where clients connect (-l/-p)")
    max_memory_bytes: int = setting(
        64 * 1024 * 1024,
        min=1024 * 1024,
        help="item memory limit, like memcached -m (default 64 MiB); counts real per-item cost",
    )
    max_item_bytes: int = setting(
        1024 * 1024,
        min=1024,
        max=1024 * 1024 * 1024,
        help="largest item, like memcached -I (default 1 MiB, same item size formula)",
    )
    max_connections: int = setting(
        1024, min=1, help="like memcached -c; over it: 'ERROR Too many open connections'"
    )
    evictions: bool = setting(
        True, help="evict LRU items when full; false = memcached -M (out of memory errors)"
    )
    flush_enabled: bool = setting(True, help="false = memcached -F (flush_all refused)")
    idle_timeout: float = setting(
        0.0, min=0.0, help="close connections idle this long; 0 = never (memcached default)"
    )
    expiry_interval: float = setting(
        5.0, min=0.1, help="how often the expiry crawler sweeps for expired items"
    )
    max_write_buffer_bytes: int = setting(
        1024 * 1024,
        min=4096,
        help="per-connection reply backlog at which the server stops reading that client",
    )
    mrc_sample_rate: float = setting(
        0.01, min=0.0, max=1.0, help="SHARDS sampling rate for 'stats mrc'; 0 disables it"
    )
    mrc_max_keys: int = setting(16384, min=64, help="bound on keys the MRC sampler tracks")
    hotkeys_capacity: int = setting(
        128, min=0, help="Space-Saving counters for 'stats hotkeys'; 0 disables it"
    )
    hotkeys_sample: int = setting(8, min=1, help="hot-key sketch sees 1 in N accesses")

    def validate(self) -> Iterator[tuple[str, str]]:
        if self.max_item_bytes > self.max_memory_bytes:
            yield ("max_item_bytes", "must not be larger than max_memory_bytes")
