from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.heartbeat.testbed import HaCluster
from hastack.testing.netns import TestBed, netns_unavailable_reason


@pytest.fixture(scope="module")
def base_cluster() -> Iterator[HaCluster]:
    """One bed for the module: 3 nodes + client, echo servers, address monitors, client probe."""
    if netns_unavailable_reason() is not None:
        yield None  # type: ignore[misc]  # the test itself calls require_netns() and skips/fails
        return
    with TestBed(hosts=3, client=True) as bed:
        cluster = HaCluster(bed, Path(tempfile.mkdtemp(prefix="hastack-ha-")))
        cluster.start_echo()
        cluster.start_monitors()
        cluster.start_probe()
        yield cluster
        for proc in cluster.echo.values():
            proc.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)


@pytest.fixture
def cluster(base_cluster: HaCluster) -> Iterator[HaCluster]:
    from hastack.testing.netns import require_netns

    require_netns()
    c = base_cluster
    # defaults; tests change what they need before c.start()
    c.quorum, c.auto_failback, c.fence, c.transport = True, True, False, "unicast"
    c.extra = ""
    c.groups = []
    try:
        yield c
    finally:
        c.stop_all()
        for name in c.names:
            c.bed.link_up(name)
            c.bed.unblock(name)
        # no leftover address after any test, on any node
        for vip in c.vips:
            assert c.holders(vip) == [], vip
