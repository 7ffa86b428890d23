"""The `hastack` command. The only module that calls ``sys.exit``.

    hastack up [CONFIG]                 start every service of CONFIG under the supervisor
    hastack down [CONFIG]               stop a running `up`
    hastack status [CONFIG]             a table: service, pid, address, state, uptime, restarts
    hastack run SERVICE --config FILE   one service in the foreground
    hastack check-config FILE           validate without starting anything

Services add their own commands (`hastack cache ...`, `hastack logs ...`, `hastack ha ...`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hastack import __version__, registry
from hastack.config import DEFAULT_CONFIG, describe_config_class, load_config
from hastack.errors import ConfigError


def _config_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "config_file", None) or args.config)


def cmd_run(args: argparse.Namespace) -> int:
    from hastack.core.lifecycle import run_service

    stack = load_config(args.config)
    if args.service not in stack.services:
        configured = ", ".join(stack.services) or "none"
        print(
            f"hastack: {args.config} has no [{args.service}] table (configured: {configured})",
            file=sys.stderr,
        )
        return 2
    return run_service(args.service, stack)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    stack = load_config(path)
    print(f"{path}: OK")
    print(f"  host {stack.host.name}: run_dir {stack.host.run_dir}, data_dir {stack.host.data_dir}")
    for name in stack.services:
        print(f"  [{name}]")
    if args.explain:
        for name in stack.services:
            print(f"\n[{name}]")
            for key, kind, default, help_text in describe_config_class(registry.config_class(name)):
                print(f"  {key:28} {kind:34} {default:24} {help_text}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from hastack.core.supervisor import run_supervisor

    return run_supervisor(load_config(_config_path(args)))


def cmd_down(args: argparse.Namespace) -> int:
    from hastack.core.supervisor import stop_running

    return stop_running(load_config(_config_path(args)).host, timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from hastack.core.supervisor import print_status

    return print_status(load_config(_config_path(args)).host, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hastack",
        description="The BBC 2008 high-availability web stack as pure-Python asyncio services.",
    )
    parser.add_argument("--version", action="version", version=f"hastack {__version__}")
    parser.add_argument(
        "--config",
        "-c",
        default=str(DEFAULT_CONFIG),
        help="host config file (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="start every configured service under the supervisor")
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="config file")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop a running `hastack up` (via its pid file)")
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="config file")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="show the supervised services as a table")
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="config file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("run", help="run one service in the foreground")
    p.add_argument("service", choices=registry.service_names())
    # SUPPRESS keeps `hastack --config F run S` working: a default here would overwrite it.
    p.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file without starting anything")
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="config file")
    p.add_argument("--explain", action="store_true", help="list every key of each table")
    p.set_defaults(func=cmd_check_config)

    for register in registry.cli_registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        code = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
