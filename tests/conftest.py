"""Fixtures shared by the plugin's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reference_harness import nats_server, postgres

pytest_plugins = ["pytester"]

# pytester points HOME at each test's temporary directory, so without this
# every subprocess run would build its own PostgreSQL template cluster (about
# 100 MB and several seconds each) under a fresh ~/.cache.
USER_CACHE = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")

# Module-scoped real servers shared by the reference-service tests.
__all__ = ["nats_server", "postgres"]


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    """Run gate suites in a subprocess against a profile; return the result."""

    def run(profile: Path, *args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            f"--stack-file={profile}",
            *args,
            timeout=300,
        )

    return run


@pytest.fixture(autouse=True)
def _shared_template_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's template cache for stacks started by any test."""
    monkeypatch.setenv("XDG_CACHE_HOME", USER_CACHE)
