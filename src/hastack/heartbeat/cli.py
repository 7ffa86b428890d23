"""`hastack ha status|standby|takeover`: talk to the local heartbeat daemon's admin endpoint.

Like Heartbeat's cl_status / hb_standby / hb_takeover. The endpoint is ``admin_listen`` of the
``[heartbeat]`` table in the host config (or ``--admin HOST:PORT``).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from hastack.config import Address, load_config


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ha", help="heartbeat cluster: status, standby, takeover")
    p.add_argument("--admin", help="admin endpoint HOST:PORT (default: from the config)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    sub = p.add_subparsers(dest="ha_command", metavar="ACTION")
    s = sub.add_parser("status", help="who holds the VIP, peers, heartbeat ages")
    s.add_argument("--json", action="store_true", help="print the raw JSON")
    s.set_defaults(func=cmd_status)
    sub.add_parser("standby", help="give the resources up (hb_standby)").set_defaults(
        func=cmd_standby
    )
    sub.add_parser("takeover", help="take the resources over (hb_takeover)").set_defaults(
        func=cmd_takeover
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _endpoint(args: argparse.Namespace) -> str:
    if args.admin:
        return str(Address.parse(args.admin))
    stack = load_config(args.config)
    cfg = stack.services.get("heartbeat")
    if cfg is None:
        raise SystemExit(f"{args.config}: no [heartbeat] table")
    if cfg.admin_listen is None:
        raise SystemExit(f"{args.config}: [heartbeat].admin_listen is not set")
    host, port = cfg.admin_listen
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return str(Address(host, port))


def _call(args: argparse.Namespace, method: str, path: str) -> dict[str, Any] | None:
    try:
        url = f"http://{_endpoint(args)}{path}"
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return None
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot reach the heartbeat daemon at {url}: {exc}", file=sys.stderr)
        return None


def format_status(st: dict[str, Any]) -> str:
    rows = [("NODE", "STATE", "PRIO", "LAST HB", "VIP", "VOTE")]
    rows.append((
        f"{st['node']} (self)",
        st["state"] + (" standby" if st.get("standby") else ""),
        str(st["priority"]),
        "-",
        "yes" if st.get("holds_vip") else "no",
        str(st.get("vote") or "-"),
    ))
    for p in st.get("peers", []):
        rows.append((
            p["node"],
            p["state"] if p["alive"] else f"dead ({p['state']})",
            str(p["priority"]),
            f"{p['age'] * 1000:.0f} ms" if p["age"] < 10 else f"{p['age']:.1f} s",
            "yes" if p["master"] else "no",
            str(p.get("vote") or "-"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    vips = ", ".join(st.get("vips", [])) or "-"
    faults = ", ".join(st.get("faults", [])) or "none"
    lines.append("")
    lines.append(
        f"VIPs {vips}; quorum {'on' if st.get('quorum') else 'off'} "
        f"({st.get('visible')}/{st.get('configured')} visible); faults: {faults}"
    )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    st = _call(args, "GET", "/ha/status")
    if st is None:
        return 1
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def cmd_standby(args: argparse.Namespace) -> int:
    st = _call(args, "POST", "/ha/standby")
    if st is None:
        return 1
    print(f"{st['node']}: standby requested (state {st['state']})")
    return 0


def cmd_takeover(args: argparse.Namespace) -> int:
    st = _call(args, "POST", "/ha/takeover")
    if st is None:
        return 1
    print(f"{st['node']}: takeover requested (state {st['state']})")
    return 0
