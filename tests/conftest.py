"""Fixtures shared by the plugin's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


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
