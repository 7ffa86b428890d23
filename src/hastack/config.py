"""TOML config -> frozen dataclasses.

One TOML file per host. The ``[hastack]`` table describes the host; every other table names a
service that ``hastack up`` starts there (see ``hastack.registry``). Each service declares its
table as a frozen dataclass whose field types drive validation:

    @dataclass(frozen=True, kw_only=True)
    class CacheConfig(ServiceConfig):
        listen: Address = setting(Address("127.0.0.1", 11211), help="where clients connect")
        max_memory_bytes: int = setting(64 << 20, min=1 << 20, help="like memcached -m")

Every problem is reported as ``FILE: [table].key: expected ..., got ...``; all problems in a file
are collected before raising, so one ``check-config`` run lists them all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

from hastack.errors import ConfigError

# Where `hastack up`, `status` and `down` look when no config is given.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "single-host.toml"

T = TypeVar("T")


class Address(NamedTuple):
    """A ``host:port`` pair. IPv6 hosts are written ``[::1]:11211``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``; raise ValueError with a readable reason."""
        if not isinstance(text, str) or not text:
            raise ValueError("expected a string 'host:port'")
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError("expected '[ipv6]:port'")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError("expected 'host:port'")
            if ":" in host:
                raise ValueError("IPv6 hosts must be bracketed: '[::1]:port'")
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is outside 0-65535")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def family(self) -> socket.AddressFamily:
        try:
            return (
                socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
            )
        except ValueError:  # a host name
            return socket.AF_INET


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    min: float | None = None,
    max: float | None = None,
    help: str = "",
) -> Any:
    """A dataclass field with validation metadata (range) and a description."""
    meta = {"min": min, "max": max, "help": help}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """Keys every service table accepts."""

    admin_listen: Address | None = setting(
        None, help="admin HTTP endpoint: /stats (JSON), /metrics (Prometheus), /health"
    )
    shutdown_timeout: float = setting(
        10.0, min=0.1, max=3600, help="how long a graceful stop may take before exiting anyway"
    )
    log_level: Literal["debug", "info", "warning", "error"] | None = setting(
        None, help="overrides [hastack].log_level for this service"
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """Cross-field checks: yield (key, problem). Subclasses extend this."""
        return iter(())


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    """[hastack]: the host this file describes."""

    name: str = setting(default_factory=socket.gethostname, help="this host's name in the cluster")
    run_dir: Path = setting(
        Path("/tmp/hastack"), help="pid file and supervisor state for `status` and `down`"
    )
    data_dir: Path = setting(Path("/tmp/hastack/data"), help="each service keeps its files below")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info")
    syslog: Address | None = setting(
        None, help="also send every service's log to this syslog collector (UDP, RFC 3164)"
    )
    start_timeout: float = setting(
        30.0, min=0.1, help="how long `up` waits for a service to announce readiness"
    )
    stop_timeout: float = setting(
        15.0, min=0.1, help="grace after SIGTERM before `up` sends SIGKILL to a service"
    )
    restart_initial_interval: float = setting(
        0.5, min=0.0, help="first restart delay after a crash; doubles up to the maximum"
    )
    restart_max_interval: float = setting(30.0, min=0.0, help="cap of the restart backoff")
    restart_reset_interval: float = setting(
        60.0, min=0.0, help="a service up this long has its backoff reset"
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        if self.restart_max_interval < self.restart_initial_interval:
            yield ("restart_max_interval", "must be >= restart_initial_interval")


@dataclass(frozen=True)
class StackConfig:
    """One host's whole config file."""

    path: Path
    host: HostConfig
    services: dict[str, ServiceConfig]


# --------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path) -> StackConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    return loads_config(text, path)


def loads_config(text: str, path: str | Path = "<string>") -> StackConfig:
    from hastack import registry  # the registry imports service config modules lazily

    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    base_dir = path.resolve().parent if str(path) != "<string>" else Path.cwd()
    loader = _Loader(path, base_dir, problems)

    host_table = data.pop("hastack", {})
    if not isinstance(host_table, dict):
        problems.append(f"{path}: [hastack]: expected a table, got {_describe(host_table)}")
        host_table = {}
    host = loader.build(HostConfig, host_table, "hastack")

    services: dict[str, ServiceConfig] = {}
    known = registry.service_names()
    for name in sorted(data, key=registry.start_order):
        table = data[name]
        if name not in known:
            problems.append(
                f"{path}: [{name}]: unknown table; expected [hastack] or a service: "
                + ", ".join(known)
            )
            continue
        if not isinstance(table, dict):
            problems.append(f"{path}: [{name}]: expected a table, got {_describe(table)}")
            continue
        cls = registry.config_class(name)
        services[name] = loader.build(cls, table, name)
    if problems:
        raise ConfigError(problems)
    return StackConfig(path=path, host=host, services=services)


def config_from_dict(cls: type[T], table: Mapping[str, Any], *, table_name: str = "test") -> T:
    """Build one config dataclass from a dict (tests and in-process services use this)."""
    problems: list[str] = []
    value = _Loader(Path("<dict>"), Path.cwd(), problems).build(cls, dict(table), table_name)
    if problems:
        raise ConfigError(problems)
    return value


class _Invalid(Exception):
    """One value did not fit its declared type; the message says what was expected."""


class _Loader:
    def __init__(self, path: Path, base_dir: Path, problems: list[str]) -> None:
        self.path = path
        self.base_dir = base_dir
        self.problems = problems

    def report(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path}: {where}: {message}")

    def build(self, cls: type[T], table: dict[str, Any], where: str) -> T:
        """Build dataclass ``cls`` from ``table``; ``where`` is ``[table]`` or ``[a.b]``."""
        label = where if where.startswith("[") else f"[{where}]"
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        before = len(self.problems)
        for key, raw in table.items():
            field = fields.get(key)
            if field is None or not field.init:
                choices = ", ".join(sorted(fields))
                self.report(f"{label}.{key}", f"unknown key; expected one of: {choices}")
                continue
            value = self.convert(hints[key], raw, f"{label}.{key}")
            if value is _BAD:
                continue
            problem = _check_range(field, value)
            if problem:
                self.report(f"{label}.{key}", f"{problem}, got {raw!r}")
                continue
            kwargs[key] = value
        for name, field in fields.items():
            if (
                field.init
                and name not in kwargs
                and name not in table
                and field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                self.report(f"{label}.{name}", f"missing required key ({_expected(hints[name])})")
        if len(self.problems) > before:
            return _BAD
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a dataclass __post_init__ may reject a combination
            self.report(label, str(exc))
            return _BAD
        validate = getattr(obj, "validate", None)
        if validate is not None:
            for key, problem in validate():
                self.report(f"{label}.{key}", problem)
        return obj

    def convert(self, hint: Any, raw: Any, where: str) -> Any:
        """Convert one value; report and return the invalid marker on failure."""
        return self._item(hint, raw, where)

    def _convert(self, hint: Any, raw: Any, where: str) -> Any:
        origin = get_origin(hint)
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(hint) if a is not type(None)]
            # TOML has no null. An optional key is normally left out; to switch off a setting
            # whose default is not None (a listener that is on by default), write `false`.
            if raw is False and type(None) in get_args(hint) and bool not in options:
                return None
            if len(options) == 1:
                return self._convert(options[0], raw, where)
            for option in options:
                try:
                    return self._convert(option, raw, where)
                except _Invalid:
                    continue
            raise _Invalid(f"expected {_expected(hint)}")
        if origin is Literal:
            choices = get_args(hint)
            if raw not in choices:
                raise _Invalid("expected one of " + ", ".join(repr(c) for c in choices))
            return raw
        if origin is tuple:
            args = get_args(hint)
            if not isinstance(raw, list):
                raise _Invalid(f"expected {_expected(hint)}")
            item_hint = args[0]
            items = []
            for i, item in enumerate(raw):
                sub_where = f"{where}[{i}]"
                value = self._item(item_hint, item, sub_where)
                if value is _BAD:
                    raise _Nested()
                items.append(value)
            return tuple(items)
        if origin is dict:
            _, value_hint = get_args(hint)
            if not isinstance(raw, dict):
                raise _Invalid(f"expected {_expected(hint)}")
            out = {}
            for k, item in raw.items():
                value = self._item(value_hint, item, f"{where}.{k}")
                if value is _BAD:
                    raise _Nested()
                out[k] = value
            return out
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(raw, dict):
                raise _Invalid(f"expected a table ({hint.__name__})")
            value = self.build(hint, raw, where if where.startswith("[") else f"[{where}]")
            if value is _BAD:
                raise _Nested()
            return value
        if hint is bool:
            if not isinstance(raw, bool):
                raise _Invalid("expected true or false")
            return raw
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise _Invalid("expected an integer")
            return raw
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise _Invalid("expected a number (seconds for *_timeout/*_interval)")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                raise _Invalid("expected a string")
            return raw
        if hint is Address:
            if not isinstance(raw, str):
                raise _Invalid("expected a string 'host:port'")
            try:
                return Address.parse(raw)
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
        if hint is Path:
            if not isinstance(raw, str) or not raw:
                raise _Invalid("expected a path string")
            p = Path(raw).expanduser()
            # normpath, not resolve(): tidy `conf/../var` without following symlinks
            return Path(os.path.normpath(p if p.is_absolute() else self.base_dir / p))
        raise _Invalid(f"unsupported config type {hint!r} (a bug in the config class)")

    def _item(self, hint: Any, raw: Any, where: str) -> Any:
        try:
            return self._convert(hint, raw, where)
        except _Nested:
            return _BAD
        except _Invalid as exc:
            self.report(where, f"{exc}, got {_describe(raw)}")
            return _BAD


class _Nested(_Invalid):
    """A nested table already reported its own problems."""

    def __init__(self) -> None:
        super().__init__("")


class _BadType:
    def __repr__(self) -> str:
        return "<invalid>"


_BAD: Any = _BadType()


def _check_range(field: dataclasses.Field[Any], value: Any) -> str | None:
    lo, hi = field.metadata.get("min"), field.metadata.get("max")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if lo is not None and hi is not None and not lo <= value <= hi:
        return f"expected a value from {lo} to {hi}"
    if lo is not None and value < lo:
        return f"expected a value >= {lo}"
    if hi is not None and value > hi:
        return f"expected a value <= {hi}"
    return None


def _expected(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        text = " or ".join(_expected(a) for a in get_args(hint) if a is not type(None))
        return text + (" (false: off)" if type(None) in get_args(hint) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(hint))
    if origin is tuple:
        return f"an array of {_expected(get_args(hint)[0])}"
    if origin is dict:
        return f"a table of {_expected(get_args(hint)[1])}"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a table ({hint.__name__})"
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Address: "a string 'host:port'",
        Path: "a path string",
    }.get(hint, repr(hint))


def _describe(raw: Any) -> str:
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(raw), type(raw).__name__)
    if isinstance(raw, dict | list):
        return kind
    return f"{raw!r} ({kind})"


def describe_config_class(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows for docs and `hastack check-config --explain`."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(str(f.default) if isinstance(f.default, Address | Path) else f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "(computed)"
        else:
            default = "(required)"
        rows.append((f.name, _expected(hints[f.name]), default, f.metadata.get("help", "")))
    return rows
