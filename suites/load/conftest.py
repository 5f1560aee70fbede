"""Fixtures of the load gates."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def load_dir(
    request: pytest.FixtureRequest, gate_report_dir: Path | None, tmp_path: Path
) -> Path:
    """Directory for this check's locust files: ``REPORT/load/TEST`` or a temp dir.

    With ``--gate-report`` the CSV, HTML and log files of each run stay next
    to the sign-off; without it they land in pytest's temporary directory.
    """
    if gate_report_dir is None:
        return tmp_path
    directory = gate_report_dir / "load" / request.node.name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def load_workers(request: pytest.FixtureRequest) -> int:
    """The ``--load-workers`` count: locust worker processes, 0 for one process."""
    workers: int = request.config.getoption("stackcheck_load_workers")
    return workers
