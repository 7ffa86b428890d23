"""Which services exist, where their code lives, and the order they start in.

Entries are import strings so that loading a config imports only the services it names, and a
service with a broken import cannot take the `hastack` command down with it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hastack.config import HostConfig, ServiceConfig
    from hastack.core.service import Service


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    config: str  # "module:ConfigClass"
    service: str  # "module:ServiceClass"
    cli: str | None = None  # "module:register" adding a top-level `hastack <command>`
    crash_cleanup: str | None = None  # "module:function(config, host)" run after a crash


# Start order: the log host first (everyone logs to it), then the tiers from the bottom up (cache,
# the application, the proxy in front of it); the supervisor stops them in reverse. heartbeat
# comes last so a VIP moves here only when the services behind it are ready.
SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            "syslog",
            "hastack.syslog.config:SyslogConfig",
            "hastack.syslog.server:SyslogService",
            cli="hastack.syslog.cli:register",
        ),
        ServiceSpec(
            "cache",
            "hastack.cache.config:CacheConfig",
            "hastack.cache.server:CacheService",
            cli="hastack.cache.cli:register",
        ),
        # The example web application behind the proxy: uses the cache, reproxy and syslog.
        ServiceSpec("app", "hastack.app.config:AppConfig", "hastack.app.server:AppService"),
        ServiceSpec(
            "proxy",
            "hastack.proxy.config:ProxyConfig",
            "hastack.proxy.server:ProxyService",
            cli="hastack.proxy.cli:register",
        ),
        ServiceSpec(
            "heartbeat",
            "hastack.heartbeat.config:HeartbeatConfig",
            "hastack.heartbeat.server:HeartbeatService",
            cli="hastack.heartbeat.cli:register",
            crash_cleanup="hastack.heartbeat.server:crash_cleanup",
        ),
        # Diagnostic line echo (Perlbal's echo role): the "small service" of failover tests.
        ServiceSpec("echo", "hastack.echo.config:EchoConfig", "hastack.echo.server:EchoService"),
    )
}


PLUGINS_ENV = "HASTACK_PLUGINS"


def _load_plugins() -> None:
    """Add services from the modules named in $HASTACK_PLUGINS (comma-separated).

    Each module defines ``SERVICE_SPECS``, a list of ServiceSpec; they start after the built-in
    services. This is how a deployment adds its own service, and how tests add toy ones.
    """
    for module_name in filter(
        None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))
    ):
        module = importlib.import_module(module_name)
        for spec in module.SERVICE_SPECS:
            SERVICES.setdefault(spec.name, spec)


_load_plugins()


def service_names() -> list[str]:
    return list(SERVICES)


def start_order(name: str) -> int:
    names = list(SERVICES)
    return names.index(name) if name in names else len(names)


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def config_class(name: str) -> type[ServiceConfig]:
    cls: type[ServiceConfig] = _resolve(SERVICES[name].config)
    return cls


def service_class(name: str) -> type[Service]:
    cls: type[Service] = _resolve(SERVICES[name].service)
    return cls


def crash_cleanup(name: str) -> Callable[[ServiceConfig, HostConfig], None] | None:
    target = SERVICES[name].crash_cleanup
    if target is None:
        return None
    try:
        fn: Callable[[ServiceConfig, HostConfig], None] = _resolve(target)
    except (ImportError, AttributeError):
        return None
    return fn


def cli_registrars() -> list[Callable[[Any], None]]:
    """The `register(subparsers)` functions of services that are installed and import cleanly."""
    out = []
    for spec in SERVICES.values():
        if spec.cli is None:
            continue
        try:
            out.append(_resolve(spec.cli))
        except ModuleNotFoundError as exc:
            # A service without a CLI module (or not built yet) simply adds no command.
            if exc.name and spec.cli.split(":")[0].startswith(exc.name):
                continue
            raise
        except AttributeError:
            continue
    return out
