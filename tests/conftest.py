"""Fixtures shared by the plugin's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from reference_harness import nats_server, postgres

pytest_plugins = ["pytester"]

# Module-scoped real servers shared by the reference-service tests.
__all__ = ["nats_server", "postgres"]


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    """Run gate suites in a subprocess against a profile; return the result."""

    def run(profile: Path, *args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "--stack-file",
            str(profile),
            *args,
            timeout=300,
        )

    return run
