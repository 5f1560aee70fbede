"""The plugin's options, markers, gate verdicts and exit codes, via pytester.

These runs use an ``existing`` profile that points at nothing: the gate tests
written here do not touch the stack, so no server is needed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import STACKS

EXISTING = """
[stack]
name = "unit"
provisioner = "existing"

[policy]
blocking_gates = ["day1", "preprod"]

[postgres]
databases = ["app"]

[nats]

[nginx]
routes = [{ prefix = "/", service = "web" }]

[services.web]
port = 4000
database = "app"
"""

GATE_TESTS = """
import pytest

@pytest.mark.gate("day1", item="web answers")
def test_day1_ok(evidence):
    evidence.record("latency", 0.25, "s")
    evidence.version("web", "1.2.3")

@pytest.mark.gate("security", item="ports closed")
def test_security_fails():
    assert False, "port 5432 is open"

def test_plain():
    pass
"""


@pytest.fixture
def profile(pytester):
    path = pytester.path / "unit.toml"
    path.write_text(EXISTING)
    return path


def test_unknown_stack_is_one_usage_error(pytester):
    result = pytester.runpytest_subprocess("--stack=nope")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1
    assert "available stacks: local, prod.example" in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_bad_profile_is_usage_error(pytester):
    path = pytester.path / "bad.toml"
    path.write_text(EXISTING.replace("port = 4000", 'port = "4000"'))
    result = pytester.runpytest_subprocess(f"--stack-file={path}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = f"ERROR: stack profile {path}: key 'services.web.port' = '4000'*"
    result.stderr.fnmatch_lines([expected + "expected an integer*"])


def test_stack_from_environment(pytester, monkeypatch):
    monkeypatch.setenv("STACKCHECK_STACK", "nope")
    result = pytester.runpytest_subprocess()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --stack=nope: no such stack profile*"])


def test_stacks_dir_ini_key(pytester):
    extra = pytester.mkdir("profiles")
    (extra / "mine.toml").write_text(EXISTING)
    pytester.makeini("[pytest]\nstackcheck_stacks_dir = profiles\n")
    pytester.makepyfile(GATE_TESTS)
    result = pytester.runpytest_subprocess("--stack=mine", "-k", "day1_ok")

    result.assert_outcomes(passed=1)


def test_without_stack_gate_tests_skip(pytester):
    pytester.makepyfile(GATE_TESTS)
    result = pytester.runpytest("-rs")

    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*no stack chosen: pass --stack NAME*"])
    result.stdout.no_fnmatch_line("*gate summary*")
    assert result.ret == pytest.ExitCode.OK


def test_gate_marker_selects_with_m(pytester, profile):
    pytester.makepyfile(GATE_TESTS)
    result = pytester.runpytest(f"--stack-file={profile}", "-m", "day1")

    result.assert_outcomes(passed=1)


def test_unknown_gate_is_rejected(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gate("dayone", item="x")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_subprocess()

    result.stderr.fnmatch_lines(["*gate 'dayone' is not a known gate*"])
    assert result.ret != pytest.ExitCode.OK


def test_non_blocking_failure_exits_zero(pytester, profile):
    pytester.makepyfile(GATE_TESTS)
    result = pytester.runpytest(f"--stack-file={profile}")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*gate summary*",
            "day1 *pass*yes*",
            "security *fail*no*",
            "deployment verdict: OK",
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_blocking_failure_exits_nonzero(pytester, profile):
    pytester.makepyfile(GATE_TESTS.replace('gate("security"', 'gate("day1"'))
    result = pytester.runpytest(f"--stack-file={profile}")

    result.stdout.fnmatch_lines(["deployment verdict: BLOCKED (day1 failed)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_failure_outside_gates_still_fails(pytester, profile):
    pytester.makepyfile(GATE_TESTS + "\ndef test_plain_fails():\n    assert False\n")
    result = pytester.runpytest(f"--stack-file={profile}")

    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_error_in_setup_blocks(pytester, profile):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("cannot reach")

        @pytest.mark.gate("preprod", item="x")
        def test_x(broken):
            pass
        """
    )
    result = pytester.runpytest(f"--stack-file={profile}")

    result.stdout.fnmatch_lines(["preprod *error*", "deployment verdict: BLOCKED*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_gate_report_files(pytester, profile):
    pytester.makepyfile(GATE_TESTS)
    report = pytester.path / "report"
    result = pytester.runpytest(
        f"--stack-file={profile}",
        f"--gate-report={report}",
        "--operator=alice",
        "--attest",
        "DR plan documented=runbook v3 reviewed",
    )

    assert sorted(p.name for p in report.iterdir()) == [
        "gates.json",
        "signoff.html",
        "signoff.md",
    ]
    document = json.loads((report / "gates.json").read_text())
    markdown = (report / "signoff.md").read_text()
    assert result.ret == pytest.ExitCode.OK
    assert document["run"]["operator"] == "alice"
    assert document["attestations"][0]["item"] == "DR plan documented"
    assert {"name": "web", "value": "1.2.3", "unit": ""} in document["versions"]
    assert document["digest"] in markdown
    assert "latency = 0.25 s" in markdown


def test_bad_attest_is_usage_error(pytester, profile):
    result = pytester.runpytest_subprocess(
        f"--stack-file={profile}", "--attest", "noequals"
    )

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--attest 'noequals': expected ITEM=NOTE*"])


def test_junit_carries_gate_and_evidence(pytester, profile):
    pytester.makepyfile(GATE_TESTS)
    junit = pytester.path / "junit.xml"
    pytester.runpytest(f"--stack-file={profile}", f"--junitxml={junit}")

    case = ET.parse(junit).getroot().find(".//testcase[@name='test_day1_ok']")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["gate"] == "day1\tweb answers"
    assert json.loads(properties["evidence.latency"]) == {"value": 0.25, "unit": "s"}


def test_collect_only_provisions_nothing(pytester):
    result = pytester.runpytest_subprocess(
        f"--stack-file={STACKS / 'local.toml'}", "--collect-only", "-q"
    )

    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "local stack up" not in result.stdout.str()


def test_fixtures_are_documented(pytester):
    result = pytester.runpytest("--fixtures")

    result.stdout.fnmatch_lines(
        [
            "stack ?session scope? -- *",
            "*The live stack under test*",
            "evidence -- *",
            "*Record what a check measured*",
        ]
    )
