"""Management endpoints on the admin listener (aiohttp is fine here: not the hot path).

GET  /proxy/status                       HTML status page
GET  /proxy/pools   JSON per pool/backend: state, active, queued, codes, latency
POST /proxy/pools/{pool}/backends        add: {"address": "h:p", "weight": 1, "max_connections": 0}
DELETE /proxy/pools/{pool}/backends/{address}   remove
POST /proxy/pools/{pool}/backends/{address}/drain    no new requests (in-flight finish)
POST /proxy/pools/{pool}/backends/{address}/enable   undo drain
POST /proxy/reload                       re-read the config file (same as SIGHUP)
"""

from __future__ import annotations

import html
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from hastack.proxy.server import ProxyService


def routes(service: ProxyService) -> list[web.RouteDef]:
    async def pools(request: web.Request) -> web.Response:
        return web.json_response(service.pool_stats())

    async def status(request: web.Request) -> web.Response:
        rows = []
        for pname, snap in service.pool_stats().items():
            for b in snap["backends"]:
                rows.append(
                    "<tr>"
                    + "".join(
                        f"<td>{html.escape(str(x))}</td>"
                        for x in (
                            pname,
                            b["address"],
                            b["state"],
                            b["weight"],
                            b["active"],
                            snap["queued"],
                            b["requests"],
                            json.dumps(b["responses"]),
                            b["latency_avg_ms"],
                        )
                    )
                    + "</tr>"
                )
        fronts = "".join(
            f"<li>{html.escape(n)}: {len(f.connections)} connections, "
            f"{f.c_requests.value} requests</li>"
            for n, f in service.fronts.items()
        )
        body = (
            "<!doctype html><html><head><title>hastack proxy</title></head><body>"
            f"<h1>hastack proxy</h1><p>up {int(time.time() - service.started_at)} s</p>"
            f"<h2>listeners</h2><ul>{fronts}</ul><h2>backends</h2>"
            "<table border=1><tr><th>pool</th><th>backend</th><th>state</th><th>weight</th>"
            "<th>active</th><th>queued</th><th>requests</th><th>responses</th>"
            "<th>avg ms</th></tr>" + "".join(rows) + "</table></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    def _pool(request: web.Request) -> Any:
        name = request.match_info["pool"]
        pool = service.pools.get(name)
        if pool is None:
            raise web.HTTPNotFound(text=f"no pool {name}\n")
        return pool

    async def add(request: web.Request) -> web.Response:
        pool = _pool(request)
        try:
            data = await request.json()
            service.add_backend(
                pool.name,
                str(data["address"]),
                int(data.get("weight", 1)),
                int(data.get("max_connections", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"bad backend: {exc}\n") from None
        return web.json_response({"ok": True})

    async def remove(request: web.Request) -> web.Response:
        pool = _pool(request)
        if not pool.remove_backend(request.match_info["address"]):
            raise web.HTTPNotFound(text="no such backend\n")
        return web.json_response({"ok": True})

    async def drain(request: web.Request) -> web.Response:
        pool = _pool(request)
        b = pool.state.get(request.match_info["address"])
        if b is None:
            raise web.HTTPNotFound(text="no such backend\n")
        b.draining = True
        pool.idle.drop(b.key)
        return web.json_response({"ok": True, "active": b.active})

    async def enable(request: web.Request) -> web.Response:
        pool = _pool(request)
        b = pool.state.get(request.match_info["address"])
        if b is None:
            raise web.HTTPNotFound(text="no such backend\n")
        b.draining = False
        b.up_since = time.monotonic()
        pool.state_changed()
        return web.json_response({"ok": True})

    async def reload(request: web.Request) -> web.Response:
        await service.reload()
        return web.json_response({"ok": True, "reloads": service.reloads.value})

    return [
        web.get("/proxy/status", status),
        web.get("/proxy/pools", pools),
        web.post("/proxy/pools/{pool}/backends", add),
        web.delete("/proxy/pools/{pool}/backends/{address}", remove),
        web.post("/proxy/pools/{pool}/backends/{address}/drain", drain),
        web.post("/proxy/pools/{pool}/backends/{address}/enable", enable),
        web.post("/proxy/reload", reload),
    ]
