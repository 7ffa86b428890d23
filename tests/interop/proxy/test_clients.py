"""Real clients against the proxy: curl (keep-alive, chunked upload, 100-continue, ranges),
wrk (a short bounded run), and the proxy itself running on uvloop (hand-rolled sendfile)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from hastack.testing import require_binary

sys.path.insert(0, str(Path(__file__).parents[2] / "component" / "proxy"))

from proxy_helpers import (
    make_backend,
    make_storage,
    proxy_addr,
    run_proxy,
    serve_app,
)

pytestmark = pytest.mark.peer


async def run(*argv: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err


def table(app: str, root: Path) -> dict[str, object]:
    return {
        "pools": {"apps": {"backends": [{"address": app}], "health": {"enabled": False}}},
        "listeners": {
            "web": {
                "listen": "127.0.0.1:0",
                "pool": "apps",
                "routes": [{"path_prefix": "/s/", "static_root": str(root), "strip_prefix": True}],
            }
        },
    }


async def test_curl(tmp_path: Path) -> None:
    require_binary("curl", "curl")
    (tmp_path / "f.bin").write_bytes(b"abcdefghij" * 1000)
    async with serve_app(make_backend("a")) as app, run_proxy(table(app, tmp_path)) as svc:
        h, p = proxy_addr(svc)
        base = f"http://{h}:{p}"
        rc, out, err = await run(
            "curl", "-sv", base + "/hello", base + "/hello", base + "/s/f.bin", "-o", "/dev/null"
        )
        assert rc == 0, err
        assert b"Re-using existing connection" in err or b"Reusing existing" in err
        rc, out, err = await run(
            "curl", "-s", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
            "--data-binary", f"@{tmp_path / 'f.bin'}", base + "/echo",
        )
        assert rc == 0 and out == (tmp_path / "f.bin").read_bytes()
        rc, out, err = await run("curl", "-s", "-r", "10-19", base + "/s/f.bin")
        assert out == b"abcdefghij"
        rc, out, err = await run("curl", "-s", "-I", base + "/s/f.bin")
        assert b"Content-Length: 10000" in out and b"ETag" in out
        rc, out, err = await run("curl", "-s", "--http1.0", base + "/stream")
        assert out == b"".join(b"part%d\n" % i for i in range(5))


async def test_wrk_short_run(tmp_path: Path) -> None:
    require_binary("wrk", "wrk")
    async with serve_app(make_backend("a")) as app, run_proxy(table(app, tmp_path)) as svc:
        h, p = proxy_addr(svc)
        rc, out, err = await run("wrk", "-t1", "-c8", "-d1s", f"http://{h}:{p}/hello")
        assert rc == 0, err
        text = out.decode()
        assert "Non-2xx" not in text and "Socket errors" not in text, text
        m = re.search(r"(\d+) requests in", text)
        assert m and int(m.group(1)) > 0


def test_on_uvloop_static_and_reproxy_file(tmp_path: Path) -> None:
    import uvloop  # a runtime dependency of hastack
    data = bytes(range(256)) * 8192  # 2 MiB: several sendfile rounds

    (tmp_path / "big.bin").write_bytes(data)

    async def main() -> None:
        answers = {"f": {"X-REPROXY-FILE": str(tmp_path / "big.bin")},
                   "u": {"X-REPROXY-URL": "http://%s/big.bin"}}
        async with serve_app(make_storage(tmp_path)) as st:
            answers["u"]["X-REPROXY-URL"] = f"http://{st}/big.bin"
            async with serve_app(make_backend("a", {"reproxy": answers})) as app:
                async with run_proxy(table(app, tmp_path)) as svc:
                    h, p = proxy_addr(svc)
                    for path in ("/s/big.bin", "/file/f", "/file/u"):
                        reader, writer = await asyncio.open_connection(h, p)
                        writer.write(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
                        got = await asyncio.wait_for(reader.read(), 30)
                        writer.close()
                        assert got.split(b"\r\n\r\n", 1)[1] == data, path

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
