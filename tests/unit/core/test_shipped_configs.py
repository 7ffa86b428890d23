"""Every config the repository ships loads cleanly (a renamed key cannot rot them silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hastack.config import load_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = sorted((REPO / "configs").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_is_valid(path: Path) -> None:
    stack = load_config(path)
    assert stack.services, f"{path} configures no service"


def test_single_host_is_the_default_and_runs_the_local_tiers() -> None:
    from hastack.config import DEFAULT_CONFIG

    assert DEFAULT_CONFIG == REPO / "configs" / "single-host.toml"
    services = set(load_config(DEFAULT_CONFIG).services)
    assert {"syslog", "cache", "proxy"} <= services
