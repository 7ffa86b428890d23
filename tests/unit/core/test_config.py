"""Config loading: every problem names file, table and key and says what was expected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack.cli import main
from hastack.config import (
    Address,
    HostConfig,
    ServiceConfig,
    config_from_dict,
    load_config,
    loads_config,
    setting,
)
from hastack.echo.config import EchoConfig
from hastack.errors import ConfigError


def problems_of(text: str, path: str = "/etc/hastack/h.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_config(text, path)
    return info.value.problems


def test_defaults_make_a_short_config_valid() -> None:
    stack = loads_config("[echo]\n", "/etc/hastack/h.toml")
    assert stack.services["echo"] == EchoConfig()
    assert isinstance(stack.host, HostConfig)


def test_unknown_key_names_file_table_key_and_choices() -> None:
    [problem] = problems_of("[echo]\nlisten = '127.0.0.1:1'\nlistn = 3\n")
    assert problem.startswith("/etc/hastack/h.toml: [echo].listn: unknown key; expected one of:")
    assert "listen" in problem


def test_wrong_type_says_expected_and_got() -> None:
    [problem] = problems_of("[echo]\nmax_connections = 'many'\n")
    assert problem == (
        "/etc/hastack/h.toml: [echo].max_connections: expected an integer, got 'many' (string)"
    )


def test_impossible_value_names_the_range() -> None:
    [problem] = problems_of("[echo]\nmax_connections = 0\n")
    assert problem == "/etc/hastack/h.toml: [echo].max_connections: expected a value >= 1, got 0"


def test_bad_address() -> None:
    [problem] = problems_of("[echo]\nlisten = '127.0.0.1'\n")
    assert "[echo].listen: expected 'host:port'" in problem
    [problem] = problems_of("[echo]\nlisten = 'localhost:99999'\n")
    assert "port 99999 is outside 0-65535" in problem


def test_unknown_table_lists_services() -> None:
    [problem] = problems_of("[memcache]\nlisten = 'x:1'\n")
    assert problem.startswith("/etc/hastack/h.toml: [memcache]: unknown table; expected [hastack]")
    assert "echo" in problem


def test_all_problems_are_reported_at_once() -> None:
    problems = problems_of(
        "[hastack]\nlog_level = 'loud'\n"
        "[echo]\nmax_connections = -1\nstart_delay = 'x'\nbogus = 1\n"
    )
    assert len(problems) == 4
    assert any("[hastack].log_level: expected one of 'debug'" in p for p in problems)


def test_cross_field_validation() -> None:
    [problem] = problems_of(
        "[hastack]\nrestart_initial_interval = 5.0\nrestart_max_interval = 1.0\n"
    )
    assert "[hastack].restart_max_interval: must be >= restart_initial_interval" in problem


def test_not_toml() -> None:
    [problem] = problems_of("[echo\n")
    assert problem.startswith("/etc/hastack/h.toml: not valid TOML:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "cannot read config" in info.value.problems[0]


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "h.toml"
    path.parent.mkdir()
    path.write_text("[hastack]\ndata_dir = 'data'\nrun_dir = '/abs/run'\n")
    host = load_config(path).host
    assert host.data_dir == tmp_path / "conf" / "data"
    assert host.run_dir == Path("/abs/run")


def test_ints_are_accepted_for_floats_but_bools_are_not() -> None:
    stack = loads_config("[echo]\nshutdown_timeout = 3\n")
    assert stack.services["echo"].shutdown_timeout == 3.0
    [problem] = problems_of("[echo]\nshutdown_timeout = true\n")
    assert "expected a number" in problem


# ---- nested types, through a config class made for the test ---------------------------------


@dataclass(frozen=True, kw_only=True)
class Backend:
    address: Address
    weight: int = setting(1, min=0, max=256)


@dataclass(frozen=True, kw_only=True)
class Pool:
    method: Literal["round_robin", "least_conn"] = "round_robin"
    backends: tuple[Backend, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NestedConfig(ServiceConfig):
    pools: dict[str, Pool] = setting(default_factory=dict)
    tags: tuple[str, ...] = ()
    limit: int | None = None


def test_nested_tables_and_arrays_of_tables() -> None:
    cfg = config_from_dict(
        NestedConfig,
        {
            "pools": {
                "web": {
                    "method": "least_conn",
                    "backends": [{"address": "10.0.0.1:80"}, {"address": "[::1]:81", "weight": 3}],
                }
            },
            "tags": ["a", "b"],
        },
        table_name="proxy",
    )
    web = cfg.pools["web"]
    assert web.method == "least_conn"
    assert web.backends[1] == Backend(address=Address("::1", 81), weight=3)
    assert str(web.backends[1].address) == "[::1]:81"
    assert cfg.tags == ("a", "b")
    assert dataclasses.is_dataclass(cfg)


def test_nested_problems_name_the_full_path() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            NestedConfig,
            {
                "pools": {"web": {"backends": [{"address": "x:1"}, {"weight": 999}]}},
                "tags": [1],
                "limit": "no",
            },
            table_name="proxy",
        )
    problems = "\n".join(info.value.problems)
    assert (
        "[proxy].pools.web.backends[1].weight: expected a value from 0 to 256, got 999" in problems
    )
    assert "[proxy].pools.web.backends[1].address: missing required key" in problems
    assert "[proxy].tags[0]: expected a string, got 1 (integer)" in problems
    assert "[proxy].limit: expected an integer, got 'no' (string)" in problems


@given(st.text(max_size=30))
def test_address_parse_never_raises_anything_but_valueerror(text: str) -> None:
    try:
        addr = Address.parse(text)
    except ValueError:
        return
    assert Address.parse(str(addr)) == addr


def test_check_config_cli_reports_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[echo]\nmax_connections = 'x'\nnope = 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}: [echo].max_connections: expected an integer" in err
    assert f"{path}: [echo].nope: unknown key" in err


def test_check_config_cli_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.toml"
    path.write_text("[echo]\nlisten = '127.0.0.1:0'\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config", str(path), "--explain"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"{path}: OK" in out and "max_connections" in out


def test_false_switches_off_an_optional_setting() -> None:
    cfg = config_from_dict(NestedConfig, {"limit": False, "admin_listen": False})
    assert cfg.limit is None and cfg.admin_listen is None
    with pytest.raises(ConfigError, match=r"\[test\].limit: expected an integer, got True"):
        config_from_dict(NestedConfig, {"limit": True})
