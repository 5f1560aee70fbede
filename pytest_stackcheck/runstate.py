"""One run of the gates: the chosen profile, the live stack, and the results.

The controller process (the only process without pytest-xdist) provisions
the stack in ``pytest_sessionstart`` and tears it down at the end; xdist
workers attach through a private state file whose path travels in
``workerinput``. So one stack serves every worker and is started once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import getpass
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_stackcheck.evidence import (
    GATE_PROPERTY,
    VERSION_PREFIX,
    parse_evidence,
)
from pytest_stackcheck.gates import (
    Attestation,
    CheckResult,
    Evidence,
    GateResult,
    Outcome,
    RunInfo,
    group_checks,
)
from pytest_stackcheck.profile import (
    ALL_GATES,
    SHIPPED_STACKS,
    Profile,
    find_stack,
    load_profile,
)

log = logging.getLogger("pytest_stackcheck")

WORKER_STATE_KEY = "stackcheck_state_file"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _gate_marks(item: pytest.Item) -> list[tuple[str, str]]:
    marks: list[tuple[str, str]] = []
    for mark in item.iter_markers("gate"):
        if not mark.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.gate needs a gate name, for "
                "example @pytest.mark.gate('day1', item='NATS round trip')"
            )
        name = str(mark.args[0])
        item_text = str(mark.kwargs.get("item", item.name))
        marks.append((name, item_text))
    return marks


def apply_gate_markers(item: pytest.Item) -> None:
    """Add a marker named after each gate of ``item`` so ``-m GATE`` selects it."""
    from pytest_stackcheck.plugin import GATE_MARKERS

    for gate, _ in _gate_marks(item):
        if gate not in GATE_MARKERS:
            raise pytest.UsageError(
                f"{item.nodeid}: gate {gate!r} is not a known gate; use one of "
                + ", ".join(GATE_MARKERS)
            )
        item.add_marker(gate)


def label_item(item: pytest.Item) -> None:
    """Store each gate and checklist item of ``item`` as user properties."""
    for gate, text in _gate_marks(item):
        entry = (GATE_PROPERTY, f"{gate}\t{text}")
        if entry not in item.user_properties:
            item.user_properties.append(entry)


def _parse_attestations(values: list[str], operator: str) -> tuple[Attestation, ...]:
    result: list[Attestation] = []
    for value in values:
        item, separator, note = value.partition("=")
        if not separator or not item.strip() or not note.strip():
            raise pytest.UsageError(
                f"--attest {value!r}: expected ITEM=NOTE, for example "
                "--attest 'DR plan documented=reviewed in runbook v3'"
            )
        result.append(Attestation(item.strip(), note.strip(), operator, _now()))
    return tuple(result)


class RunState:
    """The profile, the stack and the gate results of one pytest run."""

    def __init__(self, config: pytest.Config, profile: Profile | None) -> None:
        self.config = config
        self.profile = profile
        self.operator = config.getoption("stackcheck_operator") or _login_name()
        self.attestations = _parse_attestations(
            config.getoption("stackcheck_attest"), self.operator
        )
        self.started_at = _now()
        self.stack: Any = None
        self.provision_error = ""
        self.state_file: Path | None = None
        self._provisioner: Any = None
        self._stopped = False
        self._reports: dict[str, dict[str, Any]] = {}
        self.gates: dict[str, GateResult] = {}

    @classmethod
    def from_config(cls, config: pytest.Config) -> RunState:
        """Resolve ``--stack`` or ``--stack-file`` into a validated profile."""
        name = config.getoption("stackcheck_stack") or config.getini("stackcheck_stack")
        path_option = config.getoption("stackcheck_stack_file")

        if path_option:
            path = Path(path_option)
            if not path.is_file():
                raise pytest.UsageError(
                    f"--stack-file={path_option}: no such file; pass the path of "
                    "a stack profile (TOML)"
                )
            return cls(config, load_profile(path))
        if not name:
            return cls(config, None)

        directories = [Path(p) for p in config.getini("stackcheck_stacks_dir")]
        directories.append(SHIPPED_STACKS)
        return cls(config, load_profile(find_stack(name, directories)))

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def blocking_gates(self) -> tuple[str, ...]:
        if self.profile is None:
            return ALL_GATES
        return self.profile.doc.policy.blocking_gates

    def skip_without_stack(self, items: list[pytest.Item]) -> None:
        """Skip gate tests, with the reason, when no stack was chosen."""
        if self.profile is not None:
            return
        marker = pytest.mark.skip(
            reason="no stack chosen: pass --stack NAME or --stack-file=PATH"
        )
        for item in items:
            if item.get_closest_marker("gate") is not None:
                item.add_marker(marker)

    def start(self, session: pytest.Session) -> None:
        """Provision the stack in the controller, or note the worker's state file."""
        if self.profile is None:
            return
        if self.is_worker:
            workerinput: dict[str, Any] = self.config.workerinput  # type: ignore[attr-defined]
            self.state_file = Path(workerinput[WORKER_STATE_KEY])
            return
        if self.config.option.collectonly:
            return

        from pytest_stackcheck.errors import StackcheckError
        from pytest_stackcheck.provision.base import get_provisioner

        atexit.register(self.stop_stack)
        try:
            self._provisioner = get_provisioner(self.profile.doc.stack.provisioner)
            self.stack = self._provisioner.up(self.profile)
        except StackcheckError as exc:
            self.provision_error = str(exc)
            log.error("stack %s could not be provisioned: %s", self.profile.name, exc)
            return

        directory = Path(tempfile.mkdtemp(prefix="stackcheck-state-"))
        self.state_file = directory / "stack.json"
        self.stack.save(self.state_file)

    def hand_to_worker(self, node: Any) -> None:
        """Pass the state file to a pytest-xdist worker before it starts."""
        node.workerinput[WORKER_STATE_KEY] = (
            str(self.state_file) if self.state_file else ""
        )

    def live_stack(self) -> Any:
        """Return the live stack, failing the requesting test if there is none."""
        if self.profile is None:
            pytest.skip("no stack chosen: pass --stack NAME or --stack-file=PATH")
        if self.stack is None and self.is_worker and self.state_file:
            from pytest_stackcheck.provision.base import LiveStack

            if self.state_file.is_file():
                self.stack = LiveStack.load(self.state_file)
        if self.stack is None:
            reason = self.provision_error or "the controller could not provision it"
            pytest.fail(f"stack {self.profile.name} is not available: {reason}")
        return self.stack

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        gates = [
            str(value).split("\t", 1)
            for name, value in report.user_properties
            if name == GATE_PROPERTY
        ]
        if not gates:
            return
        entry = self._reports.setdefault(
            report.nodeid,
            {
                "gates": gates,
                "outcome": Outcome.PASSED,
                "duration": 0.0,
                "message": "",
                "properties": [],
            },
        )
        entry["duration"] += report.duration
        entry["properties"] = list(report.user_properties)
        if report.failed:
            entry["outcome"] = (
                Outcome.FAILED if report.when == "call" else Outcome.ERROR
            )
            entry["message"] = report.longreprtext
        elif report.skipped and entry["outcome"] is Outcome.PASSED:
            entry["outcome"] = Outcome.SKIPPED
            entry["message"] = _skip_reason(report)

    def _build_gates(self) -> dict[str, GateResult]:
        checks: list[CheckResult] = []
        for nodeid, entry in self._reports.items():
            evidence = parse_evidence(entry["properties"])
            for gate, item_text in entry["gates"]:
                checks.append(
                    CheckResult(
                        nodeid=nodeid,
                        gate=gate,
                        item=item_text,
                        outcome=entry["outcome"],
                        duration_s=entry["duration"],
                        evidence=evidence,
                        message=entry["message"],
                    )
                )
        return group_checks(checks, self.blocking_gates)

    def summarize(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Write the gate table, and how to reach a kept stack.

        Without a stack nothing was checked, so no table is written and a run
        of ordinary tests shows no trace of the plugin beyond skipped gate
        tests.
        """
        if self.is_worker or self.profile is None:
            return
        from pytest_stackcheck.report.terminal import write_gate_table

        self.gates = self._build_gates()
        if self.gates:
            write_gate_table(terminalreporter, self.gates)
        if self.provision_error:
            terminalreporter.write_line(
                f"stack could not be provisioned: {self.provision_error}", red=True
            )
        if self.stack is not None and self.config.getoption("stackcheck_keep_stack"):
            for line in _keep_instructions(self.stack):
                terminalreporter.write_line(line)

    def finish(self, session: pytest.Session) -> None:
        """Write the reports, set the exit status from the gates, stop the stack."""
        if self.is_worker:
            return
        self.gates = self._build_gates()

        report_dir = self.report_dir()
        if report_dir and self.profile is not None:
            from pytest_stackcheck.report.signoff import write_signoff

            written = write_signoff(
                report_dir,
                self._run_info(session),
                self.gates,
                self._plot_sections(),
            )
            log.info("gate report written: %s", ", ".join(map(str, written.values())))

        self._apply_exit_status(session)
        self._remove_state_file()
        self.stop_stack()

    def _plot_sections(self) -> list[tuple[str, str]]:
        from pytest_stackcheck.evidence import parse_plots
        from pytest_stackcheck.report.plots import render_svg

        return [
            (plot.title, render_svg(plot))
            for nodeid in sorted(self._reports)
            for plot in parse_plots(self._reports[nodeid]["properties"])
        ]

    def report_dir(self) -> Path | None:
        """Return the ``--gate-report`` directory, or None when none was given."""
        value = self.config.getoption("stackcheck_gate_report") or (
            self.config.getini("stackcheck_gate_report") or None
        )
        return Path(value) if value else None

    def _apply_exit_status(self, session: pytest.Session) -> None:
        blocked = any(gate.blocks for gate in self.gates.values())
        if blocked and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        if session.exitstatus != pytest.ExitCode.TESTS_FAILED or blocked:
            return

        # Failures only in non-blocking gates do not stop the deploy.
        failed_ids = {
            check.nodeid
            for gate in self.gates.values()
            for check in gate.checks
            if check.outcome in (Outcome.FAILED, Outcome.ERROR)
        }
        outside = session.testsfailed - len(failed_ids)
        if failed_ids and outside <= 0:
            session.exitstatus = pytest.ExitCode.OK

    def _run_info(self, session: pytest.Session) -> RunInfo:
        assert self.profile is not None
        versions: dict[str, Evidence] = {}
        for gate in self.gates.values():
            for check in gate.checks:
                for fact in check.evidence:
                    if fact.name.startswith(VERSION_PREFIX):
                        component = fact.name[len(VERSION_PREFIX) :]
                        versions[component] = Evidence(component, fact.value)
        return RunInfo(
            stack=self.profile.name,
            profile_path=str(self.profile.path),
            provisioner=self.profile.doc.stack.provisioner,
            operator=self.operator,
            started_at=self.started_at,
            finished_at=_now(),
            attestations=self.attestations,
            versions=tuple(versions.values()),
            exit_status=int(session.exitstatus),
        )

    def stop_stack(self) -> None:
        """Tear the stack down once; safe to call from atexit and unconfigure."""
        if self._stopped or self.stack is None or self._provisioner is None:
            return
        if self.config.getoption("stackcheck_keep_stack"):
            return
        self._stopped = True
        try:
            self._provisioner.down(self.stack)
        finally:
            self._remove_state_file()

    def _remove_state_file(self) -> None:
        # Workers have finished when the controller finishes, so the state
        # file (which holds the stack's generated secrets) can go.
        if self.is_worker or self.state_file is None:
            return
        self.state_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.state_file.parent.rmdir()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _keep_instructions(stack: Any) -> list[str]:
    if stack.workdir is None:
        return []
    import shutil
    import sys

    from pytest_stackcheck.provision.local import stop_command

    conf = stack.workdir / "supervisord.conf"
    supervisorctl = shutil.which("supervisorctl", path=os.path.dirname(sys.executable))
    return [
        f"local stack kept running in {stack.workdir}",
        f"  nginx:      {stack.nginx_url}",
        f"  NATS:       {stack.nats_url} (monitoring {stack.nats_monitor_url})",
        f"  logs:       {stack.log_dir}",
        f"  status:     {supervisorctl or 'supervisorctl'} -c {conf} status",
        f"  stop it:    {stop_command(stack.workdir)}",
    ]
