"""The example web application behind the proxy: the 2008 talk's app-tier patterns in one file.

* **Shared state lives in the cache, not in the process**: the visit counter is a memcached
  ``incr``, so any number of app processes behind the proxy count together.
* **Degrade, don't fail**: with the cache down the page still renders ("cache unavailable");
  the client's auto-eject (``cache_retry_interval``) keeps a dead server from costing a timeout
  per request.
* **The no-caching fix**: ``/slow/N`` stands for a page built from a slow database query; its
  result is cached for ``cache_ttl`` seconds, and ``X-Cache: HIT|MISS`` says which one you got.
* **Reproxy**: ``/files/NAME`` does not send the file. It answers with ``X-REPROXY-FILE`` and an
  empty body, and the proxy streams the file (Perlbal's reproxy), so the app process is free at
  once. Without the proxy's ``X-Proxy-Capabilities: reproxy-file`` it sends the file itself.

This is the app tier, not a hot path, so it is a plain aiohttp application.
"""

from __future__ import annotations

import asyncio
import html
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from hastack.app.config import AppConfig
from hastack.cache.client import CacheClient, CacheError, ServerDown
from hastack.config import Address, HostConfig
from hastack.core.service import Service

VISITS_KEY = b"hastack-app:visits"
SLOW_KEY = b"hastack-app:slow:%d"
CACHE_FAILURES = (ServerDown, CacheError)  # what "the cache is unavailable" looks like

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def safe_file(root: Path, name: str) -> Path | None:
    """The file ``root/name``, or None: no separators, NUL or dot names; no escape via symlink."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        return None
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        return None
    return path


class AppService(Service):
    name = "app"

    def __init__(self, config: AppConfig, host: HostConfig | None = None) -> None:
        super().__init__(config, host)
        self.cfg = config
        self.cache = CacheClient(
            config.cache_servers,
            timeout=config.cache_timeout,
            failure_limit=1,
            retry_interval=config.cache_retry_interval,
        )
        self.address: Address | None = None
        self._runner: web.AppRunner | None = None
        self.requests = self.stats.counter("requests", "requests answered")
        self.cache_errors = self.stats.counter("cache_errors", "cache requests that failed")

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._log_request])
        app.router.add_get("/", self.index)
        app.router.add_get(r"/slow/{n:\d{1,4}}", self.slow)
        app.router.add_get("/files/{name}", self.files)
        app.router.add_get("/health", self.healthcheck)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self.cfg.shutdown_timeout
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.listen.host, self.cfg.listen.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # the bound port (listen port 0)
        self.address = Address(*sockets[0].getsockname()[:2]) if sockets else self.cfg.listen

    async def drain(self) -> None:
        # Stops accepting, lets requests in flight finish (bounded by shutdown_timeout), closes.
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.cache.close()

    def addresses(self) -> dict[str, str]:
        out = super().addresses()
        if self.address is not None:
            out["listen"] = str(self.address)
        return out

    # ---- routes ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        visits = await self._count_visit()
        counter = "cache unavailable" if visits is None else f"visit number {visits}"
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hastack app</title></head>
<body>
<h1>hastack example app</h1>
<p>Answered by <b>{html.escape(self.host.name)}</b>: {counter}.</p>
<ul>
  <li><a href="/slow/30">/slow/30</a>: a slow page, then cached (see the X-Cache header)</li>
  <li><a href="/files/index.html">/files/index.html</a>: a file the proxy streams (reproxy)</li>
  <li><a href="/static/">/static/</a>: served by the proxy alone</li>
  <li><a href="/health">/health</a>: what the proxy's health checks ask</li>
</ul>
</body></html>
"""
        return web.Response(text=body, content_type="text/html")

    async def slow(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        key = SLOW_KEY % n
        cached = await self._cache_call(self.cache.get(key))
        if cached is not None:
            return web.Response(body=cached, content_type="text/plain", headers={"X-Cache": "HIT"})
        value = await self._query(n)
        await self._cache_call(self.cache.set(key, value, exptime=self.cfg.cache_ttl))
        return web.Response(body=value, content_type="text/plain", headers={"X-Cache": "MISS"})

    async def files(self, request: web.Request) -> web.StreamResponse:
        root = self.cfg.files_dir
        path = safe_file(root, request.match_info["name"]) if root is not None else None
        if path is None:
            raise web.HTTPNotFound()
        capabilities = request.headers.get("X-Proxy-Capabilities", "")
        if "reproxy-file" not in capabilities.replace(",", " ").split():
            return web.FileResponse(path)  # no proxy in front that can do it: send it ourselves
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.Response(headers={"X-REPROXY-FILE": str(path), "Content-Type": ctype})

    async def healthcheck(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # ---- helpers ---------------------------------------------------------------------------

    async def _count_visit(self) -> int | None:
        async def count() -> int | None:
            n = await self.cache.incr(VISITS_KEY)
            if n is None:  # no counter yet (first visit, or evicted): create it
                created = await self.cache.add(VISITS_KEY, b"1")  # of racing apps, one adds
                n = 1 if created else await self.cache.incr(VISITS_KEY)
            return n

        return await self._cache_call(count())

    async def _cache_call(self, call: Awaitable[T]) -> T | None:
        """Run one cache operation; a cache failure is logged and becomes None, never a 500."""
        try:
            return await call
        except CACHE_FAILURES as exc:
            self.cache_errors.value += 1
            self.log.warning("cache unavailable: %s", exc)
            return None

    async def _query(self, n: int) -> bytes:
        """Stands for the slow database query the cache saves us from."""
        await asyncio.sleep(self.cfg.query_delay)
        return b"sum of squares 0..%d = %d\n" % (n, sum(i * i for i in range(n + 1)))

    @web.middleware
    async def _log_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.value += 1
            ms = (time.monotonic() - start) * 1000
            peer = request.headers.get("X-Forwarded-For", request.remote)
            what = f"{request.method} {request.path_qs}"
            # the proxy's health checks come every 2 s: log them only at debug level
            level = logging.DEBUG if request.path == "/health" else logging.INFO
            self.log.log(level, "%s %s %d %.1fms", peer, what, status, ms)
