"""The multi-host test bed itself: isolation, connectivity, the three faults, clean teardown."""

from __future__ import annotations

import subprocess

import pytest

from hastack.testing.netns import TestBed, require_netns

pytestmark = pytest.mark.netns


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def reachable(bed: TestBed, src: str, dst: str) -> bool:
    return bed.run(src, ["ping", "-c1", "-W1", bed.ip(dst)], check=False).returncode == 0


def root_addresses() -> str:
    return subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout


def test_hosts_reach_each_other_and_faults_cut_them_off() -> None:
    require_netns()
    with TestBed(hosts=2) as bed:
        made = set(bed.namespaces())
        assert made <= namespaces()
        # the test subnet exists only inside the namespaces
        assert bed.subnet not in root_addresses()
        assert reachable(bed, "client", "n1") and reachable(bed, "n1", "n2")
        assert bed.neighbour_mac("client", bed.ip("n1")) == bed.mac("n1")

        bed.block("n1")  # partition, carrier up: n1 cannot tell locally
        assert "NO-CARRIER" not in bed.run("n1", ["ip", "link", "show", "eth0"]).stdout
        assert not reachable(bed, "n2", "n1") and reachable(bed, "client", "n2")
        bed.unblock("n1")
        assert reachable(bed, "n2", "n1")

        bed.link_down("n1")  # carrier loss: visible inside n1
        assert "NO-CARRIER" in bed.run("n1", ["ip", "link", "show", "eth0"]).stdout
        bed.link_up("n1")

        sleeper = bed.popen("n2", ["sleep", "600"])
        assert bed.holders(bed.ip("n2")) == ["n2"]
    # teardown removed every namespace and killed what ran inside
    assert not (made & namespaces())
    assert sleeper.poll() is not None


def test_teardown_also_runs_after_a_failure() -> None:
    require_netns()
    made: set[str] = set()
    with pytest.raises(RuntimeError, match="boom"), TestBed(hosts=1, client=False) as bed:
        made = set(bed.namespaces())
        raise RuntimeError("boom")
    assert made and not (made & namespaces())
