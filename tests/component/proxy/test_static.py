"""Static files: validators, 304, Range, content types, and hostile paths."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from proxy_helpers import proxy_addr, raw_request, run_proxy


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "style.css").write_text("body{}\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: the sendfile path
    (root / "sub" / "a b.txt").write_text("spaced\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(tmp_path, root / "updir")
    os.symlink(root / "style.css", root / "inside.css")
    return root


def static_table(root: Path) -> dict[str, object]:
    return {"listeners": {"web": {"listen": "127.0.0.1:0", "static_root": str(root)}}}


async def test_files_types_and_validators(site: Path) -> None:
    async with run_proxy(static_table(site)) as svc:
        h, p = proxy_addr(svc)
        base = f"http://{h}:{p}"
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/") as r:
                assert r.status == 200 and await r.text() == "<h1>home</h1>\n"
                assert r.headers["Content-Type"].startswith("text/html")
            async with s.get(base + "/style.css") as r:
                assert r.headers["Content-Type"].startswith("text/css")
                etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
            async with s.get(base + "/style.css", headers={"If-None-Match": etag}) as r:
                assert r.status == 304 and r.headers["ETag"] == etag
            async with s.get(base + "/style.css", headers={"If-Modified-Since": lm}) as r:
                assert r.status == 304
            async with s.get(base + "/style.css", headers={"If-None-Match": '"other"'}) as r:
                assert r.status == 200
            async with s.get(base + "/data.bin") as r:
                assert await r.read() == (site / "data.bin").read_bytes()
                assert r.headers["Content-Type"] == "application/octet-stream"
            async with s.get(base + "/sub/a%20b.txt") as r:
                assert await r.text() == "spaced\n"
            async with s.get(base + "/inside.css") as r:
                assert r.status == 200
            async with s.head(base + "/data.bin") as r:
                assert r.headers["Content-Length"] == str(256 * 1024)
            async with s.post(base + "/style.css") as r:
                assert r.status == 405


async def test_ranges(site: Path) -> None:
    async with run_proxy(static_table(site)) as svc:
        h, p = proxy_addr(svc)
        base = f"http://{h}:{p}/data.bin"
        data = (site / "data.bin").read_bytes()
        async with aiohttp.ClientSession() as s:
            for rng, want in [
                ("bytes=0-9", data[0:10]),
                ("bytes=100-", data[100:]),
                ("bytes=-5", data[-5:]),
                ("bytes=1000-999999999", data[1000:]),
            ]:
                async with s.get(base, headers={"Range": rng}) as r:
                    assert r.status == 206, rng
                    assert await r.read() == want, rng
            async with s.get(base, headers={"Range": "bytes=999999999-"}) as r:
                assert r.status == 416
                assert r.headers["Content-Range"] == f"bytes */{len(data)}"
            async with s.get(base, headers={"Range": "bytes=0-1,5-6"}) as r:
                assert r.status == 200  # multiple ranges: the whole file
            async with s.get(base, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}) as r:
                assert r.status == 200


@pytest.mark.parametrize(
    "path",
    [
        b"/../secret.txt",
        b"/sub/../../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E%2fsecret.txt",
        b"/sub%2f..%2f..%2fsecret.txt",
        b"/..%5csecret.txt",
        b"/leak.txt",
        b"/updir/secret.txt",
        b"/style.css%00.txt",
        b"/sub/..%2f..%2fsecret.txt",
    ],
)
async def test_no_path_traversal(site: Path, path: bytes) -> None:
    async with run_proxy(static_table(site)) as svc:
        h, p = proxy_addr(svc)
        data = await raw_request(
            h, p, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert data.split(b" ")[1] in (b"400", b"404"), (path, data[:80])
        assert b"secret" not in data
