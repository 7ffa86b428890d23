"""`hastack ha status|standby|takeover`: talk to the local heartbeat daemon's admin endpoint.

Like Heartbeat's cl_status / hb_standby / hb_takeover. The endpoint is ``admin_listen`` of the
``[heartbeat]`` table in the host config (or ``--admin HOST:PORT``). ``standby`` and
``takeover`` act on every resource group unless ``--group NAME`` picks one.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
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
    for name, func, text in (
        ("standby", cmd_standby, "give the resources up (hb_standby)"),
        ("takeover", cmd_takeover, "take the resources over (hb_takeover)"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("--group", metavar="NAME", help="only this resource group (default: all)")
        c.set_defaults(func=func)
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
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        print(f"{url}: {reason}", file=sys.stderr)
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot reach the heartbeat daemon at {url}: {exc}", file=sys.stderr)
        return None


def format_status(st: dict[str, Any]) -> str:
    """One row per (group, node); the GROUP column appears when the node runs several groups."""
    groups: list[dict[str, Any]] = st.get("groups") or [st]
    multi = len(groups) > 1 or groups[0].get("group", "default") != "default"
    rows: list[tuple[str, ...]] = [("NODE", "GROUP", "STATE", "PRIO", "LAST HB", "VIP", "VOTE")]
    for g in groups:
        rows.append((
            f"{g['node']} (self)",
            str(g.get("group")),
            g["state"] + (" standby" if g.get("standby") else ""),
            str(g["priority"]),
            "-",
            "yes" if g.get("holds_vip") else "no",
            str(g.get("vote") or "-"),
        ))
        for p in g.get("peers", []):
            rows.append((
                p["node"],
                str(g.get("group")),
                p["state"] if p["alive"] else f"dead ({p['state']})",
                str(p["priority"]),
                f"{p['age'] * 1000:.0f} ms" if p["age"] < 10 else f"{p['age']:.1f} s",
                "yes" if p["master"] else "no",
                str(p.get("vote") or "-"),
            ))
    if not multi:
        rows = [r[:1] + r[2:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    faults = ", ".join(st.get("faults", [])) or "none"
    summary = (
        f"quorum {'on' if st.get('quorum') else 'off'} "
        f"({st.get('visible')}/{st.get('configured')} visible); faults: {faults}"
    )
    lines.append("")
    if multi:
        lines += [f"{g['group']}: VIPs {', '.join(g.get('vips', [])) or '-'}" for g in groups]
        lines.append(summary)
    else:
        lines.append(f"VIPs {', '.join(st.get('vips', [])) or '-'}; {summary}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    st = _call(args, "GET", "/ha/status")
    if st is None:
        return 1
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _command(args: argparse.Namespace, action: str) -> int:
    path = f"/ha/{action}"
    if args.group:
        path += "?" + urllib.parse.urlencode({"group": args.group})
    st = _call(args, "POST", path)
    if st is None:
        return 1
    groups = [g for g in st.get("groups") or [st] if not args.group or g["group"] == args.group]
    if len(st.get("groups") or [st]) == 1:
        print(f"{st['node']}: {action} requested (state {st['state']})")
    else:
        states = ", ".join(f"{g['group']} {g['state']}" for g in groups)
        print(f"{st['node']}: {action} requested ({states})")
    return 0


def cmd_standby(args: argparse.Namespace) -> int:
    return _command(args, "standby")


def cmd_takeover(args: argparse.Namespace) -> int:
    return _command(args, "takeover")
