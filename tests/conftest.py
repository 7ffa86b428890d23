"""Fixtures shared by every test folder.

Service folders add their own conftest.py next to their tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from hastack.testing import write_config

REPO = Path(__file__).resolve().parents[1]

# Tests are imported with --import-mode=importlib (several folders have a test_proto.py), which
# does not put test folders on sys.path. Helper modules kept next to the tests (sim.py,
# proxy_helpers.py, ...) stay importable by name: every test folder goes on sys.path here.
for _folder in sorted({p.parent for p in Path(__file__).parent.rglob("*.py")}):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

# Hypothesis: modest example counts keep the suite inside its time budget; CI derandomises so
# a failure there reproduces. HYPOTHESIS_PROFILE=thorough for a long local run.
settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """make_config(toml_text) -> Path: a config file with run/data dirs inside tmp_path."""

    def make(text: str, name: str = "hastack.toml") -> Path:
        return write_config(tmp_path, text, name)

    return make


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment that makes the toy services of tests/plugins_for_tests.py available."""
    env = {
        "HASTACK_PLUGINS": "plugins_for_tests",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    yield env
