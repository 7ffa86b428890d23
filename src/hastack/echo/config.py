from __future__ import annotations

from dataclasses import dataclass

from hastack.config import Address, ServiceConfig, setting


@dataclass(frozen=True, kw_only=True)
class EchoConfig(ServiceConfig):
    """[echo]: a line echo server that names the host that answered."""

    listen: Address = setting(Address("127.0.0.1", 7007), help="where clients connect")
    max_connections: int = setting(1024, min=1, help="connections served at once")
    max_line_bytes: int = setting(4096, min=16, help="longest line answered; longer closes")
    start_delay: float = setting(
        0.0, min=0.0, max=600, help="wait this long before announcing readiness (tests, demos)"
    )
