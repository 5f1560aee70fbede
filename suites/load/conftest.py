"""Fixtures of the load gates."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

# Maximum seconds a load check waits for another to finish. The slow
# answer check alone may take twice load.proxy.slow_answer_s.
LOCK_WAIT_S = 900.0


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


@pytest.fixture
def load_exclusive(stack) -> Iterator[None]:
    """Hold a lock so that no other load check runs against this stack meanwhile.

    Under pytest-xdist two load checks would otherwise share the stack's
    CPU and each measure the other's load. A local stack keeps the lock file
    in its own directory, which teardown removes. A deployed stack's lock
    file is named after its nginx address, so separate stacks do not wait
    for each other.
    """
    if stack.workdir is not None:
        path = stack.workdir / "load.lock"
    else:
        address = stack.nginx_url.split("//", 1)[1].replace(":", "-")
        path = Path(tempfile.gettempdir()) / f"stackcheck-load-{address}.lock"
    with FileLock(str(path), timeout=LOCK_WAIT_S):
        yield
