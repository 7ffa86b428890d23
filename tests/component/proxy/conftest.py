"""Fixtures for the proxy component tests (helpers live in proxy_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    (root / "small.bin").write_bytes(b"0123456789" * 100)
    (root / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return root
