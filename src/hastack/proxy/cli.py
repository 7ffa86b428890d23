"""`hastack proxy ...`: talk to a running proxy's admin endpoint (like Perlbal's console).

    hastack proxy status                     pools and backends (state, active, codes, latency)
    hastack proxy add POOL HOST:PORT [--weight N]
    hastack proxy remove POOL HOST:PORT
    hastack proxy drain POOL HOST:PORT       no new requests; in-flight ones finish
    hastack proxy enable POOL HOST:PORT
    hastack proxy reload                     re-read the config file (same as SIGHUP)
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from hastack.config import load_config


class NoAdmin(Exception):
    """The config gives no admin endpoint to talk to."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("proxy", help="inspect and steer a running proxy")
    sub = p.add_subparsers(dest="proxy_cmd", required=True)
    sub.add_parser("status", help="pools and backends").add_argument("--json", action="store_true")
    for name in ("add", "remove", "drain", "enable"):
        sp = sub.add_parser(name, help=f"{name} a backend")
        sp.add_argument("pool")
        sp.add_argument("address", help="host:port")
        if name == "add":
            sp.add_argument("--weight", type=int, default=1)
            sp.add_argument("--max-connections", type=int, default=0)
    sub.add_parser("reload", help="re-read the config file")
    p.set_defaults(func=run)


def _admin(args: argparse.Namespace) -> str:
    path = getattr(args, "config_file", None) or args.config
    cfg = load_config(path).services.get("proxy")
    if cfg is None or cfg.admin_listen is None:
        raise NoAdmin(f"{path}: [proxy] has no admin_listen")
    return f"http://{cfg.admin_listen}/proxy"


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def run(args: argparse.Namespace) -> int:
    try:
        base = _admin(args)
        cmd = args.proxy_cmd
        if cmd == "status":
            pools = _call("GET", base + "/pools")
            if args.json:
                print(json.dumps(pools, indent=2))
                return 0
            print(f"{'pool':<12} {'backend':<22} {'state':<9} {'active':>6} {'queued':>6} "
                  f"{'requests':>9} {'avg ms':>7}  responses")
            for pname, snap in pools.items():
                for b in snap["backends"]:
                    print(f"{pname:<12} {b['address']:<22} {b['state']:<9} {b['active']:>6} "
                          f"{snap['queued']:>6} {b['requests']:>9} {b['latency_avg_ms']:>7}  "
                          f"{json.dumps(b['responses'])}")
            return 0
        if cmd == "reload":
            print(_call("POST", base + "/reload"))
            return 0
        url = f"{base}/pools/{args.pool}/backends"
        if cmd == "add":
            body = {"address": args.address, "weight": args.weight,
                    "max_connections": args.max_connections}
            print(_call("POST", url, body))
        elif cmd == "remove":
            print(_call("DELETE", f"{url}/{args.address}"))
        else:
            print(_call("POST", f"{url}/{args.address}/{cmd}"))
        return 0
    except (OSError, NoAdmin, urllib.error.URLError) as exc:
        print(f"hastack proxy: {exc}", file=sys.stderr)
        return 1
