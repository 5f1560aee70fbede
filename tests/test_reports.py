"""Tests for the gate table, gates.json and the Markdown and HTML sign-offs."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_stackcheck.gates import (
    Attestation,
    CheckResult,
    Evidence,
    GateResult,
    Outcome,
    RunInfo,
)
from pytest_stackcheck.report.json_report import (
    build_document,
    compute_digest,
    deployment_verdict,
    dump_document,
    write_json,
)
from pytest_stackcheck.report.signoff import (
    markdown_code,
    markdown_code_block,
    markdown_text,
    render_html,
    render_markdown,
    shorten_message,
    write_signoff,
)
from pytest_stackcheck.report.terminal import (
    MAX_LINE_WIDTH,
    describe_slowest,
    format_gate_table,
    format_verdict_line,
    write_gate_table,
)

HEADER_COLUMNS = ["gate", "verdict", "blocking", "passed", "failed", "errors"]
DIGEST_PATTERN = re.compile(r"\b[0-9a-f]{64}\b")
SCRIPT = "<script>alert('x')</script>"


def make_check(
    item: str,
    outcome: Outcome = Outcome.PASSED,
    duration_s: float = 0.1,
    *,
    gate: str = "day1",
    evidence: tuple[Evidence, ...] = (),
    message: str = "",
    nodeid: str | None = None,
) -> CheckResult:
    return CheckResult(
        nodeid=nodeid or f"suites/test_{gate}.py::test_{item.replace(' ', '_')}",
        gate=gate,
        item=item,
        outcome=outcome,
        duration_s=duration_s,
        evidence=evidence,
        message=message,
    )


def make_run(**changes: Any) -> RunInfo:
    run = RunInfo(
        stack="gpu-inference",
        profile_path="fixtures/stacks/local.toml",
        provisioner="supervisor",
        operator="alice",
        started_at="2024-05-01T10:00:00+00:00",
        finished_at="2024-05-01T10:04:12+00:00",
        attestations=(
            Attestation(
                item="backups restored on staging",
                note="restored snapshot 2024-04-30",
                operator="bob",
                at="2024-05-01T09:30:00+00:00",
            ),
        ),
        versions=(
            Evidence("nats-server", "2.10.14"),
            Evidence("postgres", "16.2"),
        ),
    )
    return dataclasses.replace(run, **changes)


def make_gates(day1_latency: float = 4.2) -> dict[str, GateResult]:
    day1 = GateResult(
        "day1",
        blocking=True,
        checks=[
            make_check(
                "nats pub/sub round trip",
                duration_s=0.31,
                evidence=(Evidence("p99 latency", day1_latency, "ms"),),
            ),
            make_check("postgres accepts writes", duration_s=0.12),
            make_check(
                "nginx serves the model api",
                Outcome.FAILED,
                0.05,
                message="assert 502 == 200\n where 502 = response.status_code",
            ),
            make_check("gpu visible in container", Outcome.SKIPPED, 0.0),
        ],
    )
    day2 = GateResult(
        "day2",
        blocking=False,
        checks=[
            make_check("nats restarts cleanly", gate="day2", duration_s=2.5),
            make_check("disk alarms", Outcome.ERROR, 0.2, gate="day2", message="boom"),
        ],
    )
    soak = GateResult("soak", blocking=False)
    return {"day1": day1, "day2": day2, "soak": soak}


def passing_gates() -> dict[str, GateResult]:
    return {
        "day1": GateResult(
            "day1", blocking=True, checks=[make_check("nats pub/sub round trip")]
        )
    }


class RecordingWriter:
    """A stand-in for pytest's terminal reporter that records every call."""

    def __init__(self) -> None:
        self.separators: list[tuple[str, str | None]] = []
        self.lines: list[tuple[str, dict[str, bool]]] = []

    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None:
        self.separators.append((sep, title))

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append((line, markup))


# Terminal table


def test_gate_table_header_columns() -> None:
    header = format_gate_table(make_gates())[0]

    assert header.split()[:7] == [*HEADER_COLUMNS, "skipped"]
    assert header.endswith("slowest check")


def test_gate_table_rows_and_counts() -> None:
    lines = format_gate_table(make_gates())

    assert len(lines) == 4
    assert lines[1].split()[:7] == ["day1", "fail", "yes", "2", "1", "0", "1"]
    assert lines[2].split()[:7] == ["day2", "error", "no", "1", "0", "1", "0"]
    assert lines[3].split()[:4] == ["soak", "not", "run", "no"]


def test_gate_table_slowest_check() -> None:
    lines = format_gate_table(make_gates())

    assert lines[1].endswith("nats pub/sub round trip (0.31 s)")
    assert lines[2].endswith("nats restarts cleanly (2.50 s)")
    assert lines[3].endswith("-")


def test_gate_table_columns_align() -> None:
    lines = format_gate_table(make_gates())
    slowest_column = lines[0].index("slowest check")

    assert lines[1].index("nats pub/sub") == slowest_column
    assert lines[2].index("nats restarts") == slowest_column


def test_gate_table_truncates_long_text() -> None:
    long_item = "a check whose item text goes on " * 5
    gates = {
        "a-very-long-gate-name-indeed": GateResult(
            "a-very-long-gate-name-indeed",
            blocking=False,
            checks=[make_check(long_item, duration_s=12.5)],
        )
    }

    lines = format_gate_table(gates)

    assert MAX_LINE_WIDTH < 100
    for line in lines:
        assert len(line) <= MAX_LINE_WIDTH
    assert lines[1].startswith("a-very-long-gat…")
    assert lines[1].endswith("… (12.50 s)")


def test_slowest_uses_nodeid_without_item() -> None:
    nodeid = "suites/deeply/nested/path/test_messaging.py::test_round_trip"
    check = make_check("", nodeid=nodeid, duration_s=1.0)

    text = describe_slowest(check, 40)

    assert len(text) == 40
    assert text.startswith("…")
    assert text.endswith("::test_round_trip (1.00 s)")


def test_slowest_short_width() -> None:
    check = make_check("nats pub/sub round trip", duration_s=0.31)

    assert len(describe_slowest(check, 8)) == 8
    assert describe_slowest(None, 30) == "-"


def test_verdict_line_blocked() -> None:
    assert (
        format_verdict_line(make_gates()) == "deployment verdict: BLOCKED (day1 failed)"
    )


def test_verdict_line_ok() -> None:
    assert format_verdict_line(passing_gates()) == "deployment verdict: OK"


def test_verdict_ignores_non_blocking_failures() -> None:
    gates = make_gates()
    gates["day1"].blocking = False

    assert deployment_verdict(gates) == "OK"


def test_verdict_names_every_blocking_gate() -> None:
    gates = make_gates()
    gates["day2"].blocking = True

    assert deployment_verdict(gates) == "BLOCKED (day1 failed, day2 errored)"


def test_write_gate_table_markup() -> None:
    writer = RecordingWriter()

    write_gate_table(writer, make_gates())

    assert writer.separators == [("=", "gate summary")]
    texts = [line for line, _ in writer.lines]
    assert texts[:4] == format_gate_table(make_gates())
    markups = [markup for _, markup in writer.lines]
    assert markups[1] == {"red": True}
    assert markups[2] == {"red": True}
    assert markups[3] == {"yellow": True}
    assert texts[-1] == "deployment verdict: BLOCKED (day1 failed)"
    assert markups[-1] == {"bold": True, "red": True}


def test_write_gate_table_ok_is_green() -> None:
    writer = RecordingWriter()

    write_gate_table(writer, passing_gates())

    assert writer.lines[1][1] == {"green": True}
    assert writer.lines[-1] == ("deployment verdict: OK", {"bold": True, "green": True})


def test_write_gate_table_without_gates() -> None:
    writer = RecordingWriter()

    write_gate_table(writer, {})

    assert [line for line, _ in writer.lines] == [
        "no checks joined a gate",
        "deployment verdict: OK",
    ]


def test_write_gate_table_real_reporter(pytestconfig: pytest.Config) -> None:
    output = io.StringIO()
    reporter = pytest.TerminalReporter(pytestconfig, file=output)

    write_gate_table(reporter, make_gates())

    text = output.getvalue()
    assert " gate summary " in text
    assert "nats pub/sub round trip (0.31 s)" in text
    assert text.rstrip().endswith("deployment verdict: BLOCKED (day1 failed)")


# gates.json


def test_document_run_and_deployment() -> None:
    document = build_document(make_run(), make_gates())

    assert document["run"]["stack"] == "gpu-inference"
    assert document["run"]["profile_path"] == "fixtures/stacks/local.toml"
    assert document["run"]["exit_status"] == 0
    assert document["deployment"] == {
        "verdict": "BLOCKED (day1 failed)",
        "blocked": True,
        "blocked_by": ["day1"],
    }
    assert document["versions"][0] == {
        "name": "nats-server",
        "value": "2.10.14",
        "unit": "",
    }
    assert document["attestations"][0]["operator"] == "bob"


def test_document_gates_and_checks() -> None:
    document = build_document(make_run(), make_gates())
    day1 = document["gates"][0]

    assert [gate["name"] for gate in document["gates"]] == ["day1", "day2", "soak"]
    assert day1["verdict"] == "fail"
    assert day1["blocking"] is True
    assert day1["counts"] == {"passed": 2, "failed": 1, "error": 0, "skipped": 1}
    assert day1["checks"][0] == {
        "nodeid": "suites/test_day1.py::test_nats_pub/sub_round_trip",
        "item": "nats pub/sub round trip",
        "outcome": "passed",
        "duration_s": 0.31,
        "message": "",
        "evidence": [{"name": "p99 latency", "value": 4.2, "unit": "ms"}],
    }
    assert day1["checks"][2]["message"].startswith("assert 502 == 200")
    assert document["gates"][2]["verdict"] == "not run"


def test_digest_matches_document() -> None:
    document = build_document(make_run(), make_gates())

    assert DIGEST_PATTERN.fullmatch(document["digest"])
    assert compute_digest(document) == document["digest"]


def test_digest_stable_across_builds() -> None:
    first = build_document(make_run(), make_gates())
    second = build_document(make_run(), make_gates())

    assert first["digest"] == second["digest"]


def test_digest_changes_with_evidence() -> None:
    original = build_document(make_run(), make_gates(day1_latency=4.2))
    changed = build_document(make_run(), make_gates(day1_latency=4.3))

    assert original["digest"] != changed["digest"]


def test_digest_changes_with_run_info() -> None:
    original = build_document(make_run(), make_gates())
    changed = build_document(make_run(operator="alicf"), make_gates())

    assert original["digest"] != changed["digest"]


def test_non_finite_evidence_is_strict_json(tmp_path: Path) -> None:
    gates = make_gates(day1_latency=float("nan"))
    path = tmp_path / "out" / "gates.json"

    write_json(path, make_run(), gates)

    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text
    document = json.loads(text)
    assert document["gates"][0]["checks"][0]["evidence"][0]["value"] == "nan"
    assert compute_digest(document) == document["digest"]


evidence_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)


@given(name=st.text(), value=evidence_values, message=st.text())
def test_digest_survives_file_round_trip(
    name: str, value: str | int | float | bool | None, message: str
) -> None:
    check = make_check(
        "probe", Outcome.FAILED, evidence=(Evidence(name, value),), message=message
    )
    gates = {"day1": GateResult("day1", blocking=True, checks=[check])}
    document = build_document(make_run(), gates)

    reloaded = json.loads(dump_document(document))

    assert compute_digest(reloaded) == document["digest"]


# Sign-off documents


def test_write_signoff_writes_three_files(tmp_path: Path) -> None:
    directory = tmp_path / "gate-report" / "run-1"

    paths = write_signoff(directory, make_run(), make_gates())

    assert set(paths) == {"json", "markdown", "html"}
    assert paths["json"] == directory / "gates.json"
    assert paths["markdown"] == directory / "signoff.md"
    assert paths["html"] == directory / "signoff.html"
    for path in paths.values():
        assert path.is_file()
        assert path.stat().st_size > 0


def test_write_signoff_same_digest_everywhere(tmp_path: Path) -> None:
    paths = write_signoff(tmp_path, make_run(), make_gates())

    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    markdown = paths["markdown"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    digest = document["digest"]

    assert compute_digest(document) == digest
    assert DIGEST_PATTERN.findall(markdown) == [digest]
    assert DIGEST_PATTERN.findall(html) == [digest]
    assert markdown.rstrip().endswith(f"`{digest}`")


def test_write_signoff_overwrites_files(tmp_path: Path) -> None:
    write_signoff(tmp_path, make_run(), make_gates())
    paths = write_signoff(tmp_path, make_run(), passing_gates())

    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["deployment"]["verdict"] == "OK"


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_signoff_names_run(render: Any) -> None:
    text = render(make_run(), make_gates(), "0" * 64)

    for expected in [
        "gpu-inference",
        "fixtures/stacks/local.toml",
        "supervisor",
        "alice",
        "2024-05-01T10:00:00+00:00",
        "2024-05-01T10:04:12+00:00",
        "BLOCKED (day1 failed)",
        "nats-server",
        "2.10.14",
        "backups restored on staging",
        "restored snapshot 2024-04-30",
        "bob",
        "2024-05-01T09:30:00+00:00",
        "p99 latency = 4.2 ms",
        "0.31 s",
        "where 502 = response.status_code",
        "0" * 64,
    ]:
        assert expected in text


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_signoff_omits_passed_messages(render: Any) -> None:
    check = make_check("probe", message="captured but passed")
    gates = {"day1": GateResult("day1", blocking=True, checks=[check])}

    text = render(make_run(), gates, "0" * 64)

    assert "captured but passed" not in text
    assert "deployment verdict: ok" in text.lower()


def test_markdown_tables() -> None:
    markdown = render_markdown(make_run(), make_gates(), "0" * 64)

    assert "| Check | Outcome | Duration | Evidence |" in markdown
    assert "| day1 | fail | yes | 2 | 1 | 0 | 1 |" in markdown
    assert "### day1: fail (blocking)" in markdown
    assert "| nats\\-server | 2.10.14 |" not in markdown
    assert "| nats-server | 2.10.14 |" in markdown
    assert "`p99 latency = 4.2 ms`" in markdown


def test_markdown_escapes_markup() -> None:
    check = make_check(
        f"item | with {SCRIPT}",
        Outcome.FAILED,
        evidence=(Evidence("body", "a|b"),),
        message=f"{SCRIPT}\n```\nend",
    )
    gates = {"day1": GateResult("day1", blocking=True, checks=[check])}

    markdown = render_markdown(make_run(), gates, "0" * 64)

    assert "item \\| with \\<script\\>" in markdown
    assert "`body = a\\|b`" in markdown
    assert "````\n<script>alert('x')</script>\n```\nend\n````" in markdown


def test_markdown_helpers() -> None:
    assert markdown_text("a_b*c\nd") == "a\\_b\\*c d"
    assert markdown_code("x = `y`") == "`` x = `y` ``"
    assert markdown_code("p|q") == "`p\\|q`"
    assert markdown_code_block("plain") == ["```", "plain", "```"]


def test_html_escapes_check_text() -> None:
    check = make_check(
        f"item {SCRIPT}",
        Outcome.FAILED,
        evidence=(Evidence("body", SCRIPT),),
        message=f"AssertionError: {SCRIPT}",
    )
    gates = {"day1": GateResult("day1", blocking=True, checks=[check])}
    run = make_run(operator=SCRIPT)

    html = render_html(run, gates, "0" * 64)

    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 4


def test_html_is_self_contained() -> None:
    html = render_html(make_run(), make_gates(), "0" * 64)

    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html
    assert "http://" not in html
    assert "https://" not in html
    assert "<link" not in html
    assert "src=" not in html


def test_html_verdict_classes() -> None:
    html = render_html(make_run(), make_gates(), "0" * 64)

    assert 'class="deployment deployment-blocked"' in html
    assert 'class="badge verdict-fail"' in html
    assert 'class="badge verdict-not-run"' in html
    assert 'class="badge outcome-passed"' in html
    assert '<ul class="evidence">' in html


def test_html_ok_deployment_class() -> None:
    html = render_html(make_run(), passing_gates(), "0" * 64)

    assert 'class="deployment deployment-ok"' in html
    assert "Deployment verdict: OK" in html


def test_html_extra_sections() -> None:
    plot = '<svg width="10" height="10"><rect width="10" height="10"/></svg>'

    html = render_html(
        make_run(), make_gates(), "0" * 64, extra_sections=[("latency <p99>", plot)]
    )

    assert "<h2>latency &lt;p99&gt;</h2>" in html
    assert plot in html
    assert html.index(plot) < html.index('class="digest"')


def test_failure_message_shortened() -> None:
    message = "\n".join(f"line {number}" for number in range(1, 31))
    check = make_check("probe", Outcome.FAILED, message=message)
    gates = {"day1": GateResult("day1", blocking=True, checks=[check])}

    for text in [
        render_markdown(make_run(), gates, "0" * 64),
        render_html(make_run(), gates, "0" * 64),
    ]:
        assert "line 20\n" in text
        assert "line 21" not in text
        assert "10 more lines" in text


def test_shorten_message_cases() -> None:
    assert shorten_message("one\ntwo\n") == "one\ntwo"
    assert shorten_message("") == "(no message recorded)"
    assert shorten_message("a\nb\nc", max_lines=2).splitlines()[:2] == ["a", "b"]


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_signoff_gate_without_checks(render: Any) -> None:
    gates = {"soak": GateResult("soak", blocking=False)}

    text = render(make_run(), gates, "0" * 64)

    assert "No checks ran." in text
    assert "Check" not in text
