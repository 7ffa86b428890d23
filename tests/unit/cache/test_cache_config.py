"""[cache] TOML -> CacheConfig through the shared loader: every key, and its errors."""

from __future__ import annotations

import pytest

from hastack.cache.config import CacheConfig
from hastack.config import Address, loads_config
from hastack.errors import ConfigError

SNIPPET = """
[cache]
listen = "127.0.0.1:11211"
max_memory_bytes = 67108864
max_item_bytes = 1048576
max_connections = 1024
evictions = true
flush_enabled = true
idle_timeout = 0.0
expiry_interval = 5.0
max_write_buffer_bytes = 1048576
mrc_sample_rate = 0.01
mrc_max_keys = 16384
hotkeys_capacity = 128
hotkeys_sample = 8
"""


def test_the_recommended_snippet_loads() -> None:
    stack = loads_config(SNIPPET)
    cfg = stack.services["cache"]
    assert isinstance(cfg, CacheConfig)
    assert cfg == CacheConfig()  # the snippet spells out the defaults
    assert cfg.listen == Address("127.0.0.1", 11211)


def test_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config("[cache]\nmax_memory_bytes = 10\nlisten = 5\nbogus = 1\n")
    text = str(info.value)
    assert "[cache].max_memory_bytes" in text
    assert "[cache].listen" in text
    assert "[cache].bogus" in text


def test_item_larger_than_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_item_bytes"):
        loads_config("[cache]\nmax_memory_bytes = 1048576\nmax_item_bytes = 2097152\n")


def test_the_example_config_is_valid() -> None:
    from pathlib import Path

    from hastack.config import load_config

    path = Path(__file__).resolve().parents[3] / "configs" / "examples" / "cache.toml"
    cfg = load_config(path).services["cache"]
    assert isinstance(cfg, CacheConfig) and cfg.admin_listen == Address("127.0.0.1", 9211)
