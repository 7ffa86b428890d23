"""`hastack logs tail|grep`: read every collector of the config, merged by timestamp.

The collectors are the ``[syslog]`` table's ``admin_listen`` plus its ``peers`` (the admin
addresses of the other collectors in a cluster), or ``--collector`` options. Each is asked
over HTTP (``GET /logs``); the answers are merged by their fixed-width timestamps.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from hastack.config import Address, load_config
from hastack.syslog.proto import parse_line
from hastack.syslog.reader import Filter, merge_sorted, parse_since


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("logs", help="tail or search the syslog collectors' files")
    sub = p.add_subparsers(dest="logs_command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", help="only this host (glob)")
        sp.add_argument("--program", "-p", help="only this program / APP-NAME / tag (glob)")
        sp.add_argument("--severity", "-s", help="this severity and more severe (e.g. warning)")
        sp.add_argument("--since", help="10m, 2h, 1d, an ISO time or epoch seconds")
        sp.add_argument(
            "--collector", action="append", default=[], metavar="HOST:PORT",
            help="admin address of a collector (repeatable; default: from the config)",
        )  # fmt: skip
        sp.add_argument("--short", action="store_true", help="print 'TS HOST APP: MSG' only")
        sp.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file")

    t = sub.add_parser("tail", help="the last lines, optionally following new ones")
    t.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10; 0: all)")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    common(t)
    t.set_defaults(func=cmd_logs)
    g = sub.add_parser("grep", help="search every file (rotated ones too) with a regex")
    g.add_argument("pattern", help="Python regular expression")
    g.add_argument("-i", "--ignore-case", action="store_true")
    g.add_argument("-m", "--max-count", type=int, default=0, help="at most this many (last) lines")
    common(g)
    g.set_defaults(func=cmd_logs)


def collectors(args: argparse.Namespace) -> list[Address]:
    if args.collector:
        return [Address.parse(a) for a in args.collector]
    stack = load_config(args.config)
    cfg = stack.services.get("syslog")
    if cfg is None:
        raise ValueError(f"{args.config} has no [syslog] table; use --collector HOST:PORT")
    out: list[Address] = []
    admin = getattr(cfg, "admin_listen", None)
    if admin is not None:
        out.append(admin)
    out.extend(getattr(cfg, "peers", ()))
    if not out:
        raise ValueError(f"{args.config}: [syslog] has no admin_listen or peers to read from")
    return out


def build_query(args: argparse.Namespace) -> dict[str, str]:
    q: dict[str, str] = {}
    for key in ("host", "program", "severity"):
        value = getattr(args, key, None)
        if value:
            q[key] = value
    if args.since:
        q["since"] = repr(parse_since(args.since))
    if args.logs_command == "grep":
        q.update(mode="grep", pattern=args.pattern, limit=str(args.max_count))
        if args.ignore_case:
            q["ignore_case"] = "1"
    else:
        q.update(mode="tail", limit=str(args.lines))
    Filter.from_query(q)  # validate before asking anyone
    return q


def render(line: str, short: bool) -> str:
    if not short:
        return line
    s = parse_line(line)
    if s is None:
        return line
    app = s.app if s.procid == "-" else f"{s.app}[{s.procid}]"
    return f"{s.ts_text} {s.host} {app}: {s.message()}\n"


async def _fetch(session: aiohttp.ClientSession, addr: Address, q: dict[str, str]) -> list[str]:
    async with session.get(f"http://{addr}/logs", params=q) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{addr}: HTTP {resp.status}: {(await resp.text())[:200]}")
        text = await resp.text(errors="backslashreplace")
    return text.splitlines(keepends=True)


async def _follow(
    session: aiohttp.ClientSession, addr: Address, q: dict[str, str], short: bool
) -> None:
    async with session.get(f"http://{addr}/logs", params={**q, "follow": "1", "limit": "0"}) as r:
        if r.status != 200:
            raise RuntimeError(f"{addr}: HTTP {r.status}")
        async for raw in r.content:
            sys.stdout.write(render(raw.decode("utf-8", "backslashreplace"), short))
            sys.stdout.flush()


async def run_logs(args: argparse.Namespace, addrs: list[Address], q: dict[str, str]) -> int:
    timeout = aiohttp.ClientTimeout(total=None if args.logs_command == "tail" and args.follow
                                    else 120, sock_connect=10)  # fmt: skip
    failed = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        results = await asyncio.gather(
            *(_fetch(session, a, q) for a in addrs), return_exceptions=True
        )
        groups: list[list[str]] = []
        for addr, res in zip(addrs, results, strict=True):
            if isinstance(res, BaseException):
                failed += 1
                print(f"hastack logs: {addr}: {res}", file=sys.stderr)
            else:
                groups.append(res)
        lines = merge_sorted(groups)
        limit = int(q.get("limit", "0"))
        if limit:
            lines = lines[-limit:]
        for line in lines:
            sys.stdout.write(render(line, args.short))
        sys.stdout.flush()
        if args.logs_command == "tail" and args.follow:
            # History was printed above; from now on only new lines (history=0).
            fq = {**q, "history": "0"}
            await asyncio.gather(*(_follow(session, a, fq, args.short) for a in addrs))
    return 1 if failed == len(addrs) else 0


def cmd_logs(args: argparse.Namespace) -> int:
    try:
        addrs = collectors(args)
        q = build_query(args)
    except ValueError as exc:
        print(f"hastack logs: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_logs(args, addrs, q))
    except KeyboardInterrupt:
        return 130
