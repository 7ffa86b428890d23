"""Fixtures for the syslog collector's in-process tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hastack.config import HostConfig
from hastack.syslog.server import SyslogService
from hastack.syslog.testing import make_config
from hastack.testing import running_service


@pytest.fixture
def host(tmp_path: Path) -> HostConfig:
    return HostConfig(name="test-host", run_dir=tmp_path / "run", data_dir=tmp_path / "data")


@pytest.fixture
async def collector(tmp_path: Path, host: HostConfig) -> AsyncIterator[SyslogService]:
    async with running_service(SyslogService, make_config(tmp_path), host) as svc:
        yield svc
