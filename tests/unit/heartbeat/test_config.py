from __future__ import annotations

from pathlib import Path

import pytest

from hastack.config import load_config
from hastack.errors import ConfigError
from hastack.heartbeat.config import HeartbeatConfig, parse_vip

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "examples" / "heartbeat.toml"


def test_parse_vip() -> None:
    assert parse_vip("10.0.0.50/24", "eth0") == ("10.0.0.50", 24, "eth0")
    assert parse_vip("10.0.0.50/32/bond0", "eth0") == ("10.0.0.50", 32, "bond0")
    for bad in ("10.0.0.50", "10.0.0.500/24", "10.0.0.5/33", "x/24", "::1/64"):
        with pytest.raises(ValueError):
            parse_vip(bad, "eth0")


def test_example_config_loads() -> None:
    stack = load_config(EXAMPLE)
    cfg = stack.services["heartbeat"]
    assert isinstance(cfg, HeartbeatConfig)
    assert cfg.quorum and cfg.auth_send_key == 2 and cfg.resources[0].name == "proxy"
    assert list(cfg.validate()) == []


def test_cross_field_problems() -> None:
    cfg = HeartbeatConfig(
        auth_keys={"1": "a"}, auth_send_key=3, keepalive_interval=1.0, dead_timeout=1.5,
        warn_timeout=2.0, quorum=True, nodes=("a", "b"), node="c",
    )
    keys = {k for k, _ in cfg.validate()}
    assert keys == {"auth_send_key", "dead_timeout", "warn_timeout", "quorum", "nodes"}


def test_defaults_follow_heartbeat_sample() -> None:
    cfg = HeartbeatConfig()
    assert (cfg.keepalive_interval, cfg.warn_timeout, cfg.dead_timeout, cfg.initdead_timeout) == (
        2.0, 10.0, 30.0, 120.0)
    assert cfg.bind.port == 694
    assert [k for k, _ in cfg.validate()] == ["auth_keys"]


def test_loader_reports_bad_types(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text('[heartbeat]\npriority = 900\nvips = "10.0.0.1/24"\nbogus = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for key in ("priority", "vips", "bogus"):
        assert f"[heartbeat].{key}" in text


GROUPS = """
[heartbeat]
auth_keys = { "1" = "k" }
priority = 120
auto_failback = false
vip_interface = "eth1"

[[heartbeat.groups]]
name = "web-a"
priority = 150
vips = ["10.0.0.50/24"]
auto_failback = true

[[heartbeat.groups.resources]]
name = "proxy"
command = ["/etc/init.d/proxy"]

[[heartbeat.groups]]
name = "web-b"
vips = ["10.0.0.51/24/eth2"]
"""


def test_groups_parse_and_inherit(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(GROUPS)
    cfg = load_config(path).services["heartbeat"]
    assert isinstance(cfg, HeartbeatConfig)
    a, b = cfg.effective_groups()
    assert (a.name, a.priority, a.auto_failback, a.vips) == ("web-a", 150, True, ("10.0.0.50/24",))
    assert a.resources[0].command == ("/etc/init.d/proxy",)
    # unset per-group keys come from [heartbeat]
    assert (b.name, b.priority, b.auto_failback, b.resources) == ("web-b", 120, False, ())
    from hastack.heartbeat.server import configured_vips

    assert [(v.ip, v.dev) for v in configured_vips(cfg)] == [
        ("10.0.0.50", "eth1"), ("10.0.0.51", "eth2")]


def test_without_groups_the_top_level_is_the_default_group() -> None:
    cfg = HeartbeatConfig(auth_keys={"1": "k"}, priority=77, vips=("10.0.0.50/24",))
    (g,) = cfg.effective_groups()
    assert (g.name, g.priority, g.auto_failback, g.vips) == ("default", 77, True, cfg.vips)


def _problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "h.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize(("extra", "expected"), [
    ("bogus = 1", "[heartbeat].groups[1].bogus: unknown key; expected one of: auto_failback, "
     "name, priority, resources, vips"),
    ("priority = 300", "[heartbeat].groups[1].priority: expected a value from 1 to 255"),
    ('[[heartbeat.groups]]\nname = "c"\nvips = ["10.0.0.999/24"]',
     "[heartbeat].groups[2].vips: '10.0.0.999/24': '10.0.0.999' is not an IPv4 address"),
    ('[[heartbeat.groups]]\nname = "bad name!"', "[heartbeat].groups[2].name: expected 1-64"),
    ('[[heartbeat.groups]]\nname = "web-a"',
     "[heartbeat].groups[2].name: group 'web-a' is defined twice"),
    ('[[heartbeat.groups]]\nname = "c"\nvips = ["10.0.0.50/32/eth9"]',
     "[heartbeat].groups[2].vips: 10.0.0.50 is already in group 'web-a'"),
    ("[[heartbeat.groups]]", "[heartbeat].groups[2].name: missing required key"),
])
def test_group_errors_name_file_table_and_key(tmp_path: Path, extra: str, expected: str) -> None:
    text = _problems(tmp_path, GROUPS + extra + "\n")
    assert f"{tmp_path / 'h.toml'}: {expected}" in text, text


def test_top_level_vips_and_resources_conflict_with_groups(tmp_path: Path) -> None:
    text = _problems(tmp_path, GROUPS.replace(
        'vip_interface = "eth1"', 'vip_interface = "eth1"\nvips = ["10.0.0.60/24"]'))
    assert "[heartbeat].vips: with [[heartbeat.groups]], give each group its own vips" in text
