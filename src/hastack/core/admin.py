"""The small HTTP admin endpoint every service can expose (``admin_listen``).

``GET /stats`` (JSON; ``?format=prometheus`` for text), ``GET /metrics`` (Prometheus text format),
``GET /health`` (200 or 503 with a JSON body), plus whatever routes the service adds. aiohttp is
fine here: this is not a hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from hastack.config import Address

if TYPE_CHECKING:
    from hastack.core.service import Service

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


class AdminServer:
    def __init__(self, service: Service, address: Address) -> None:
        self.service = service
        self.requested = address
        self.address: Address | None = None
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.add_routes(self.service.admin_routes())
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.requested.host, self.requested.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server sockets
        sockets = getattr(server, "sockets", None) or []
        name = sockets[0].getsockname() if sockets else (self.requested.host, self.requested.port)
        self.address = Address(name[0], name[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stats(self, request: web.Request) -> web.Response:
        if request.query.get("format") == "prometheus":
            return await self._metrics(request)
        return web.json_response(
            {"service": self.service.name, "stats": self.service.stats.snapshot()}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.service.stats.prometheus(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE}
        )

    async def _health(self, request: web.Request) -> web.Response:
        ok, detail = self.service.health()
        body = {"service": self.service.name, "status": "ok" if ok else "failing", **detail}
        return web.json_response(body, status=200 if ok else 503)
