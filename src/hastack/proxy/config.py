"""[proxy]: reverse proxy, load balancer, reproxy front and static file server.

Shape of the table (Perlbal's pools and services, with named routes instead of selectors)::

    [proxy]
    admin_listen = "127.0.0.1:9080"

    [proxy.pools.apps]
    backends = [{address = "127.0.0.1:8081"}, {address = "127.0.0.1:8082", weight = 2}]
    balance = "round_robin"
    [proxy.pools.apps.health]
    path = "/health"

    [proxy.listeners.web]
    listen = "127.0.0.1:8080"
    pool = "apps"                       # default route
    routes = [{path_prefix = "/static/", static_root = "static"},
              {path_prefix = "/_reproxy/", pool = "storage", internal = true}]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hastack.config import Address, ServiceConfig, setting


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """One member of a pool (Perlbal `POOL p ADD ip:port`)."""

    address: Address = setting(help="host:port of the application server")
    weight: int = setting(1, min=0, max=1000, help="relative share for balance=weighted; 0 = spare")
    max_connections: int = setting(
        0, min=0, help="concurrent requests to this backend (HAProxy maxconn); 0 = pool default"
    )


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """Active HTTP checks and passive ejection (HAProxy `check inter 2000 rise 2 fall 3`)."""

    enabled: bool = setting(True, help="run active checks (passive ejection always runs)")
    path: str = setting("/", help="GET this path; any answer below 500 is healthy")
    host: str | None = setting(None, help="Host header of checks (default: the backend address)")
    check_interval: float = setting(2.0, min=0.05, help="HAProxy inter 2000 ms")
    check_timeout: float = setting(2.0, min=0.05, help="HAProxy timeout check (defaults to inter)")
    rise: int = setting(2, min=1, help="consecutive good checks to mark a backend up (HAProxy 2)")
    fall: int = setting(3, min=1, help="consecutive bad checks to mark a backend down (HAProxy 3)")
    error_limit: int = setting(
        5, min=1, help="consecutive 5xx/timeouts that eject a backend (HAProxy error-limit 10)"
    )
    eject_interval: float = setting(
        10.0, min=0.1, help="ejection time without active checks (nginx fail_timeout 10 s)"
    )
    slow_start_interval: float = setting(
        5.0, min=0.0, help="ramp a recovered backend's weight up over this long (HAProxy slowstart)"
    )


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """A named group of backends (Perlbal CREATE POOL)."""

    backends: tuple[BackendConfig, ...] = setting(default_factory=tuple)
    balance: Literal["round_robin", "least_conn", "weighted"] = setting(
        "round_robin", help="per-request pick (Perlbal only had random per connection)"
    )
    affinity_cookie: str | None = setting(
        None, help="cookie name for session affinity (set by the proxy); unset = off"
    )
    max_connections_per_backend: int = setting(
        0, min=0, help="default per-backend concurrency cap; 0 = unlimited"
    )
    max_queue: int = setting(
        256, min=0, help="requests waiting for a backend slot; beyond it answer 503"
    )
    queue_timeout: float = setting(5.0, min=0.01, help="wait for a slot, then 503 (HAProxy)")
    connect_timeout: float = setting(3.0, min=0.01, help="TCP connect to a backend")
    response_timeout: float = setting(
        30.0, min=0.01, help="from request sent to response head (nginx proxy_read_timeout 60 s)"
    )
    read_timeout: float = setting(60.0, min=0.01, help="between body reads from a backend")
    retries: int = setting(
        1, min=0, max=5, help="retries of idempotent requests on another backend"
    )
    max_idle_per_backend: int = setting(
        64, min=0, help="idle keep-alive connections kept (Perlbal backend_persist_cache)"
    )
    idle_timeout: float = setting(15.0, min=0.1, help="idle pooled connections are closed after")
    health: HealthConfig = setting(default_factory=HealthConfig)


@dataclass(frozen=True, kw_only=True)
class RouteConfig:
    """A routing rule (Perlbal vhosts/vpaths selector). First match wins."""

    host: str | None = setting(None, help="Host to match: exact, or '*.example.com'")
    path_prefix: str = setting("/", help="URI path prefix to match")
    pool: str | None = setting(None, help="proxy to this pool")
    static_root: Path | None = setting(None, help="serve files from this directory")
    strip_prefix: bool = setting(False, help="remove path_prefix before proxying / file lookup")
    internal: bool = setting(
        False, help="only reachable through X-Accel-Redirect from a backend (nginx `internal`)"
    )


@dataclass(frozen=True, kw_only=True)
class ListenerConfig:
    """One listening service (Perlbal CREATE SERVICE, role reverse_proxy/web_server)."""

    listen: Address = setting(Address("127.0.0.1", 8080), help="where clients connect")
    pool: str | None = setting(None, help="default pool when no route matches")
    static_root: Path | None = setting(None, help="default static root when no route matches")
    routes: tuple[RouteConfig, ...] = setting(default_factory=tuple)
    max_connections: int = setting(10000, min=1, help="client connections (Perlbal: RLIMIT_NOFILE)")
    # -- client side timeouts and limits
    client_idle_timeout: float = setting(
        30.0, min=0.01, help="keep-alive idle (Perlbal persist_client_idle_timeout 30 s)"
    )
    header_timeout: float = setting(
        10.0, min=0.01, help="whole request head must arrive within (slowloris; Apache 20-40 s)"
    )
    send_timeout: float = setting(60.0, min=0.01, help="client not reading (nginx send_timeout)")
    body_timeout: float = setting(60.0, min=0.01, help="between request body reads")
    max_request_line_bytes: int = setting(8190, min=64, help="Apache LimitRequestLine -> 414")
    max_header_bytes: int = setting(32768, min=256, help="nginx 4 x 8k header buffers -> 431")
    max_headers: int = setting(100, min=1, help="Apache LimitRequestFields -> 431")
    max_body_bytes: int = setting(
        200 * 1024 * 1024, min=0, help="request body limit -> 413 (Perlbal chunked max 200 MB)"
    )
    max_buffer_bytes: int = setting(
        256 * 1024, min=4096, help="read-ahead before pausing the other side (Perlbal buffer_size)"
    )
    # -- X-Forwarded-For trust model (Perlbal)
    trusted_proxies: tuple[str, ...] = setting(
        default_factory=tuple, help="CIDRs whose X-Forwarded-For is kept and appended to"
    )
    always_trusted: bool = setting(False, help="trust every client's X-Forwarded-For")
    blind_proxy: bool = setting(False, help="leave forwarding headers untouched")
    forwarded_proto: str = setting("http", help="X-Forwarded-Proto sent to backends")
    # -- reproxy
    enable_reproxy: bool = setting(True, help="honour X-REPROXY-URL/FILE from backends")
    enable_accel_redirect: bool = setting(True, help="honour X-Accel-Redirect from backends")
    reproxy_connect_timeout: float = setting(
        1.0, min=0.01, help="per storage URL (Perlbal: 5 s pending connect)"
    )
    reproxy_response_timeout: float = setting(
        3.0, min=0.01, help="per storage URL, first byte (Perlbal: none; waits 30 s idle timeout)"
    )
    reproxy_dead_interval: float = setting(
        5.0, min=0.0, help="a storage host that failed is tried last for this long"
    )
    reproxy_cache_max_entries: int = setting(
        1000, min=0, help="X-REPROXY-CACHE-FOR entries (Perlbal reproxy_cache_maxsize)"
    )
    reproxy_max_idle_per_host: int = setting(64, min=0, help="idle storage connections per host")
    reproxy_idle_timeout: float = setting(5.0, min=0.1, help="Perlbal closes idle storage at 5 s")
    reproxy_file_roots: tuple[Path, ...] = setting(
        default_factory=tuple, help="X-REPROXY-FILE only under these dirs; empty = any path"
    )
    server_tokens: bool = setting(False, help="send `Server: hastack` on generated responses")

    def validate(self) -> Iterator[tuple[str, str]]:
        for i, r in enumerate(self.routes):
            if (r.pool is None) == (r.static_root is None):
                yield (f"routes[{i}]", "set exactly one of pool or static_root")
            if not r.path_prefix.startswith("/"):
                yield (f"routes[{i}].path_prefix", "must start with '/'")


@dataclass(frozen=True, kw_only=True)
class ProxyConfig(ServiceConfig):
    """[proxy]: HTTP/1.1 reverse proxy with Perlbal reproxy, health checks and static files."""

    pools: dict[str, PoolConfig] = setting(default_factory=dict)
    listeners: dict[str, ListenerConfig] = setting(default_factory=dict)

    def validate(self) -> Iterator[tuple[str, str]]:
        for lname, lst in self.listeners.items():
            names = [lst.pool] + [r.pool for r in lst.routes]
            for p in names:
                if p is not None and p not in self.pools:
                    yield (f"listeners.{lname}", f"unknown pool {p!r}")
        for pname, pool in self.pools.items():
            seen: set[Address] = set()
            for b in pool.backends:
                if b.address in seen:
                    yield (f"pools.{pname}.backends", f"duplicate backend {b.address}")
                seen.add(b.address)
