"""The gate summary table that pytest prints at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pytest_stackcheck.gates import CheckResult, GateResult, Outcome, Verdict
from pytest_stackcheck.report.json_report import blocking_gates, deployment_verdict

MAX_LINE_WIDTH = 99
ELLIPSIS = "…"
COLUMN_GAP = "  "

# Gate names longer than this are cut so the slowest check keeps its room.
MAX_GATE_WIDTH = 16

VERDICT_MARKUP: dict[Verdict, str] = {
    Verdict.PASS: "green",
    Verdict.FAIL: "red",
    Verdict.ERROR: "red",
    Verdict.WAIVED: "yellow",
    Verdict.NOT_RUN: "yellow",
}


class LineWriter(Protocol):
    """The part of ``pytest.TerminalReporter`` that the gate summary writes to."""

    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None: ...

    def write_line(self, line: str, **markup: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    width: int
    right_aligned: bool = False

    def format(self, text: str) -> str:
        if self.right_aligned:
            return text.rjust(self.width)
        return text.ljust(self.width)


def truncate_end(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` characters, marking a cut end with an ellipsis."""
    if len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[:width]
    return text[: width - len(ELLIPSIS)] + ELLIPSIS


def truncate_start(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` characters, marking a cut start with an ellipsis.

    Node ids are cut this way because their test name sits at the end.
    """
    if len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[len(text) - width :]
    return ELLIPSIS + text[len(text) - width + len(ELLIPSIS) :]


def format_seconds(seconds: float) -> str:
    """Format a duration in seconds with two decimals, e.g. ``0.31 s``."""
    return f"{seconds:.2f} s"


def describe_slowest(check: CheckResult | None, width: int) -> str:
    """Describe the slowest check as ``item (0.31 s)`` in at most ``width`` columns.

    The check's item text is used when it has one, otherwise its node id. The
    label is shortened before the duration is, so the duration stays readable.
    """
    if check is None:
        return "-"

    suffix = f" ({format_seconds(check.duration_s)})"
    label_width = width - len(suffix)
    if label_width < len(ELLIPSIS) + 1:
        return truncate_end(f"{check.item or check.nodeid}{suffix}", width)

    if check.item:
        label = truncate_end(check.item, label_width)
    else:
        label = truncate_start(check.nodeid, label_width)
    return label + suffix


def _columns(gates: Mapping[str, GateResult]) -> list[_Column]:
    gate_width = max([len("gate"), *(len(name) for name in gates)])
    gate_width = min(gate_width, MAX_GATE_WIDTH)

    columns = [
        _Column("gate", gate_width),
        _Column("verdict", max(len(verdict.value) for verdict in Verdict)),
        _Column("blocking", len("blocking")),
        _Column("passed", len("passed"), right_aligned=True),
        _Column("failed", len("failed"), right_aligned=True),
        _Column("errors", len("errors"), right_aligned=True),
        _Column("skipped", len("skipped"), right_aligned=True),
    ]

    used_width = sum(column.width + len(COLUMN_GAP) for column in columns)
    columns.append(_Column("slowest check", MAX_LINE_WIDTH - used_width))
    return columns


def _join(columns: list[_Column], cells: list[str]) -> str:
    line = COLUMN_GAP.join(
        column.format(cell) for column, cell in zip(columns, cells, strict=True)
    )
    return line.rstrip()


def format_gate_table(gates: Mapping[str, GateResult]) -> list[str]:
    """Format one header line and one line per gate, each under 100 columns.

    Columns: gate, verdict, blocking (yes/no), passed, failed, errors, skipped and
    the slowest check with its duration. Gates keep the order of ``gates``.
    """
    columns = _columns(gates)
    lines = [_join(columns, [column.header for column in columns])]

    for gate in gates.values():
        cells = [
            truncate_end(gate.name, columns[0].width),
            gate.verdict.value,
            "yes" if gate.blocking else "no",
            str(gate.count(Outcome.PASSED)),
            str(gate.count(Outcome.FAILED)),
            str(gate.count(Outcome.ERROR)),
            str(gate.count(Outcome.SKIPPED)),
            describe_slowest(gate.slowest, columns[-1].width),
        ]
        lines.append(_join(columns, cells))

    return lines


def format_verdict_line(gates: Mapping[str, GateResult]) -> str:
    """Format the closing line, e.g. ``deployment verdict: BLOCKED (day1 failed)``."""
    return f"deployment verdict: {deployment_verdict(gates)}"


def write_gate_table(
    terminalreporter: LineWriter, gates: Mapping[str, GateResult]
) -> None:
    """Write the ``gate summary`` section: the gate table and the deployment verdict.

    Each gate's line is green when it passed, red when it failed or errored and
    yellow when it was waived or did not run.
    """
    terminalreporter.write_sep("=", "gate summary")

    if gates:
        header, *rows = format_gate_table(gates)
        terminalreporter.write_line(header, bold=True)
        for gate, row in zip(gates.values(), rows, strict=True):
            terminalreporter.write_line(row, **{VERDICT_MARKUP[gate.verdict]: True})
    else:
        terminalreporter.write_line("no checks joined a gate", yellow=True)

    blocked = bool(blocking_gates(gates))
    verdict_colour = "red" if blocked else "green"
    terminalreporter.write_line(
        format_verdict_line(gates), bold=True, **{verdict_colour: True}
    )
