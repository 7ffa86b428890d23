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
