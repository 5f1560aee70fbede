"""The pytest11 entry point: options, ini keys, markers, hooks and fixtures.

This module stays thin so that ``pytest --help`` is fast: the stack, its
provisioners and the reports load inside hooks, and only when ``--stack`` or
``--stack-file`` is given. Without them the plugin leaves ordinary test runs
alone and skips the gate suites with a reason.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_stackcheck.evidence import EvidenceRecorder
    from pytest_stackcheck.provision.base import LiveStack
    from pytest_stackcheck.runstate import RunState

OPTION_STACK = "--stack"
OPTION_STACK_FILE = "--stack-file"
OPTION_GATE_REPORT = "--gate-report"
OPTION_KEEP_STACK = "--keep-stack"
OPTION_OPERATOR = "--operator"
OPTION_ATTEST = "--attest"
OPTION_LOAD_WORKERS = "--load-workers"
OPTION_CHAOS_SEED = "--chaos-seed"
OPTION_CHAOS_JOURNAL = "--chaos-journal"

ENV_STACK = "STACKCHECK_STACK"
ENV_STACK_FILE = "STACKCHECK_STACK_FILE"
ENV_GATE_REPORT = "STACKCHECK_GATE_REPORT"
ENV_OPERATOR = "STACKCHECK_OPERATOR"
ENV_LOAD_WORKERS = "STACKCHECK_LOAD_WORKERS"
ENV_CHAOS_SEED = "STACKCHECK_CHAOS_SEED"
ENV_CHAOS_JOURNAL = "STACKCHECK_CHAOS_JOURNAL"

INI_STACKS_DIR = "stackcheck_stacks_dir"
INI_STACK = "stackcheck_stack"
INI_GATE_REPORT = "stackcheck_gate_report"

GATE_MARKERS = {
    "preprod": "pre-production acceptance: configuration and wiring",
    "production": "production acceptance: the deployed stack serves",
    "day1": "day-1 sign-off of a new host: everything started and works",
    "gpu": "GPU and CUDA health",
    "chaos": "restart, failover and network faults (destructive)",
    "load": "load against the LLM gateway and NATS, judged against SLOs",
    "backup": "backup round trips, integrity, retention and freshness",
    "security": "exposure, TLS and input handling",
}

STATE_KEY = pytest.StashKey["RunState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stackcheck", "deployment gates (pytest-stackcheck)")
    group.addoption(
        OPTION_STACK,
        dest="stackcheck_stack",
        metavar="NAME",
        default=os.environ.get(ENV_STACK),
        help=f"stack profile to provision and check, by name (env {ENV_STACK})",
    )
    group.addoption(
        OPTION_STACK_FILE,
        dest="stackcheck_stack_file",
        metavar="PATH",
        default=os.environ.get(ENV_STACK_FILE),
        help=f"stack profile to use, by path (env {ENV_STACK_FILE})",
    )
    group.addoption(
        OPTION_GATE_REPORT,
        dest="stackcheck_gate_report",
        metavar="DIR",
        default=os.environ.get(ENV_GATE_REPORT),
        help="write gates.json, signoff.md and signoff.html into DIR "
        f"(env {ENV_GATE_REPORT})",
    )
    group.addoption(
        OPTION_KEEP_STACK,
        dest="stackcheck_keep_stack",
        action="store_true",
        default=False,
        help="leave a local stack running after the run and show how to stop it",
    )
    group.addoption(
        OPTION_OPERATOR,
        dest="stackcheck_operator",
        metavar="NAME",
        default=os.environ.get(ENV_OPERATOR),
        help=f"operator named in the sign-off (env {ENV_OPERATOR}, default: "
        "the login name)",
    )
    group.addoption(
        OPTION_ATTEST,
        dest="stackcheck_attest",
        metavar="ITEM=NOTE",
        action="append",
        default=[],
        help="vouch for a checklist item no machine can check; repeatable",
    )
    group.addoption(
        OPTION_LOAD_WORKERS,
        dest="stackcheck_load_workers",
        metavar="N",
        type=_worker_count,
        default=_worker_count(os.environ.get(ENV_LOAD_WORKERS) or "0"),
        help="run locust as a master with N local worker processes; 0 runs "
        f"one process (env {ENV_LOAD_WORKERS}, default 0)",
    )
    group.addoption(
        OPTION_CHAOS_SEED,
        dest="stackcheck_chaos_seed",
        metavar="N",
        type=_seed,
        default=os.environ.get(ENV_CHAOS_SEED),
        help="run the nightly chaos schedule: random faults drawn from seed N "
        f"(an integer), reproducible with the same N (env {ENV_CHAOS_SEED})",
    )
    group.addoption(
        OPTION_CHAOS_JOURNAL,
        dest="stackcheck_chaos_journal",
        metavar="PATH",
        default=os.environ.get(ENV_CHAOS_JOURNAL),
        help="file of pending chaos rollbacks, replayed at the start of the next "
        f"run (env {ENV_CHAOS_JOURNAL}, default: a file per stack in the "
        "temporary directory)",
    )
    parser.addini(
        INI_STACKS_DIR,
        "extra directory searched for stack profiles (NAME.toml)",
        type="paths",
        default=[],
    )
    parser.addini(INI_STACK, "stack profile used when --stack is not given")
    parser.addini(INI_GATE_REPORT, "directory for the gate report files")


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise pytest.UsageError(
            f"{OPTION_LOAD_WORKERS}={text!r}: expected a whole number of worker "
            "processes, 0 or more; pass for example --load-workers 2"
        )
    return count


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise pytest.UsageError(
            f"{OPTION_CHAOS_SEED}={text}: not an integer; pass a seed such as "
            f"{OPTION_CHAOS_SEED}=1234"
        ) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gate(name, item): tie a test to a deployment gate and the checklist "
        "item it proves; gates: " + ", ".join(GATE_MARKERS),
    )
    for name, meaning in GATE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")

    from pytest_stackcheck.runstate import RunState

    state = RunState.from_config(config)
    config.stash[STATE_KEY] = state
    # The state object receives pytest_runtest_logreport itself, because that
    # hook gets no config to find it by.
    config.pluginmanager.register(state, "stackcheck-state")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "stackcheck-xdist")


class _XdistHooks:
    """Hooks that exist only when pytest-xdist is installed."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_configure_node(self, node: object) -> None:
        self.state.hand_to_worker(node)


def pytest_report_header(config: pytest.Config) -> list[str]:
    seed = config.getoption("stackcheck_chaos_seed")
    return [] if seed is None else [f"chaos seed: {seed} ({OPTION_CHAOS_SEED}={seed})"]


def pytest_itemcollected(item: pytest.Item) -> None:
    from pytest_stackcheck.runstate import apply_gate_markers

    apply_gate_markers(item)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash[STATE_KEY]
    state.skip_without_stack(items)

    from pytest_stackcheck.chaos.policy import refuse_selected_chaos

    refuse_selected_chaos(config, state.profile, items)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STATE_KEY].start(session)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    from pytest_stackcheck.runstate import label_item

    label_item(item)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    config.stash[STATE_KEY].summarize(terminalreporter)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[STATE_KEY].finish(session)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.stop_stack()


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> LiveStack:
    """The live stack under test, provisioned once per run (all xdist workers).

    Tests that use it are skipped when no ``--stack`` is given, and error out
    with the provisioner's message when the stack could not be started.
    """
    live: LiveStack = request.config.stash[STATE_KEY].live_stack()
    return live


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> EvidenceRecorder:
    """Record what a check measured; it appears in the sign-off and JUnit XML."""
    from pytest_stackcheck.evidence import EvidenceRecorder

    return EvidenceRecorder(request.node.user_properties)


@pytest.fixture(scope="session")
def gate_report_dir(request: pytest.FixtureRequest) -> Path | None:
    """The ``--gate-report`` directory, where checks may write raw artifacts.

    None when the run writes no report. Checks that write files there (load
    statistics, for example) should use a subdirectory named after the gate.
    """
    directory: Path | None = request.config.stash[STATE_KEY].report_dir()
    return directory


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize gate tests over the services, databases and routes of the profile.

    Without a profile each list holds one placeholder, so the test still
    collects and is skipped with the reason that no stack was chosen.
    """
    state = metafunc.config.stash.get(STATE_KEY, None)
    profile = state.profile if state is not None else None
    doc = profile.doc if profile is not None else None

    choices: dict[str, list[object]] = {
        "service_name": list(doc.services) if doc else ["<no stack>"],
        "database_name": list(doc.postgres.databases) if doc else ["<no stack>"],
        "route": list(doc.nginx.routes) if doc else ["<no stack>"],
    }
    for argname, values in choices.items():
        if argname in metafunc.fixturenames:
            ids = [getattr(v, "prefix", str(v)) for v in values]
            metafunc.parametrize(argname, values, ids=ids)
