"""The sign-off documents a person reads before approving a deploy.

``write_signoff`` writes three files for one run: ``gates.json`` for machines,
``signoff.md`` for review in a repository and ``signoff.html``, a self-contained
page. All three carry the same content digest (see ``json_report``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from pytest_stackcheck.gates import (
    CheckResult,
    Evidence,
    GateResult,
    Outcome,
    RunInfo,
    Verdict,
)
from pytest_stackcheck.report.json_report import (
    DIGEST_KEY,
    blocking_gates,
    build_document,
    deployment_verdict,
    dump_document,
)
from pytest_stackcheck.report.terminal import format_seconds

JSON_NAME = "gates.json"
MARKDOWN_NAME = "signoff.md"
HTML_NAME = "signoff.html"
HTML_TEMPLATE = "signoff.html.j2"

MAX_MESSAGE_LINES = 20
DIGEST_DESCRIPTION = (
    "SHA-256 of gates.json without its digest field, serialised with sorted keys "
    "and no whitespace"
)

# Characters that Markdown (CommonMark with GitHub tables) could read as markup
# or raw HTML in running text. CommonMark lets any ASCII punctuation be escaped.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")
_BACKTICK_RUN = re.compile(r"`+")


@dataclass(frozen=True, slots=True)
class CheckView:
    """One check as both sign-off formats show it."""

    item: str
    nodeid: str
    outcome: str
    duration: str
    evidence: tuple[str, ...]
    failure_message: str | None


@dataclass(frozen=True, slots=True)
class GateView:
    """One gate as both sign-off formats show it."""

    name: str
    verdict: str
    css_class: str
    blocking: bool
    blocks: bool
    passed: int
    failed: int
    errors: int
    skipped: int
    checks: tuple[CheckView, ...]

    @property
    def failures(self) -> tuple[CheckView, ...]:
        """Checks that failed or errored, each with its shortened message."""
        return tuple(
            check for check in self.checks if check.failure_message is not None
        )


def shorten_message(message: str, max_lines: int = MAX_MESSAGE_LINES) -> str:
    """Keep the first ``max_lines`` lines of ``message`` and count those left out."""
    lines = message.rstrip("\n").splitlines()
    if not lines:
        return "(no message recorded)"
    if len(lines) <= max_lines:
        return "\n".join(lines)

    omitted = len(lines) - max_lines
    first_lines = "\n".join(lines[:max_lines])
    return f"{first_lines}\n… {omitted} more lines, see gates.json for the full message"


def _check_view(check: CheckResult) -> CheckView:
    failed = check.outcome in (Outcome.FAILED, Outcome.ERROR)
    return CheckView(
        item=check.item or check.nodeid,
        nodeid=check.nodeid,
        outcome=check.outcome.value,
        duration=format_seconds(check.duration_s),
        evidence=_skip_reason(check)
        + tuple(evidence.render() for evidence in check.evidence),
        failure_message=shorten_message(check.message) if failed else None,
    )


def _skip_reason(check: CheckResult) -> tuple[str, ...]:
    # A skipped check's reason is its evidence, because it explains why the
    # item was not checked (no GPU, chaos not allowed) and what would change it.
    if check.outcome is not Outcome.SKIPPED or not check.message.strip():
        return ()
    reason = check.message.strip().splitlines()[0].removeprefix("Skipped: ")
    return (f"skipped: {reason}",)


def _verdict_class(verdict: Verdict) -> str:
    return "verdict-" + verdict.value.replace(" ", "-")


def gate_views(gates: Mapping[str, GateResult]) -> list[GateView]:
    """Convert gates into the rows and sections that both sign-off formats show."""
    return [
        GateView(
            name=gate.name,
            verdict=gate.verdict.value,
            css_class=_verdict_class(gate.verdict),
            blocking=gate.blocking,
            blocks=gate.blocks,
            passed=gate.count(Outcome.PASSED),
            failed=gate.count(Outcome.FAILED),
            errors=gate.count(Outcome.ERROR),
            skipped=gate.count(Outcome.SKIPPED),
            checks=tuple(_check_view(check) for check in gate.checks),
        )
        for gate in gates.values()
    ]


def _render_version(version: Evidence) -> str:
    unit = f" {version.unit}" if version.unit else ""
    return f"{version.value}{unit}"


def _run_fields(run: RunInfo) -> list[tuple[str, str]]:
    return [
        ("Stack", run.stack),
        ("Profile", run.profile_path),
        ("Provisioner", run.provisioner),
        ("Operator", run.operator),
        ("Started", run.started_at),
        ("Finished", run.finished_at),
        ("pytest exit status", str(run.exit_status)),
    ]


# Markdown


def markdown_text(text: str) -> str:
    """Escape ``text`` for a Markdown table cell or paragraph, on one line."""
    one_line = " ".join(text.splitlines())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)


def markdown_code(text: str) -> str:
    """Wrap ``text`` in an inline code span that is safe inside a table cell.

    The fence is one backtick longer than the longest backtick run in the text,
    and pipes are escaped because GitHub tables split cells on them even inside
    code spans.
    """
    one_line = " ".join(text.splitlines()).replace("|", "\\|")
    longest_run = max((len(run) for run in _BACKTICK_RUN.findall(one_line)), default=0)
    fence = "`" * (longest_run + 1)

    # A space keeps a leading or trailing backtick from joining the fence.
    if one_line.startswith("`") or one_line.endswith("`"):
        one_line = f" {one_line} "
    return f"{fence}{one_line}{fence}"


def markdown_code_block(text: str) -> list[str]:
    """Return the lines of a fenced code block holding ``text`` verbatim."""
    longest_run = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return [fence, *text.splitlines(), fence]


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _markdown_gate(gate: GateView) -> list[str]:
    blocking = "blocking" if gate.blocking else "not blocking"
    lines = [
        f"### {markdown_text(gate.name)}: {gate.verdict} ({blocking})",
        "",
        f"Passed {gate.passed}, failed {gate.failed}, errors {gate.errors}, "
        f"skipped {gate.skipped}.",
        "",
    ]

    if not gate.checks:
        return [*lines, "No checks ran.", ""]

    rows = []
    for check in gate.checks:
        item = markdown_text(check.item)
        if check.item != check.nodeid:
            item += "<br>" + markdown_code(check.nodeid)
        evidence = "<br>".join(markdown_code(fact) for fact in check.evidence)
        rows.append([item, check.outcome, check.duration, evidence or "-"])
    lines.extend(_markdown_table(["Check", "Outcome", "Duration", "Evidence"], rows))

    for check in gate.checks:
        if check.failure_message is None:
            continue
        lines.extend(["", f"#### {check.outcome}: {markdown_text(check.item)}", ""])
        lines.append(markdown_code(check.nodeid))
        lines.append("")
        lines.extend(markdown_code_block(check.failure_message))

    lines.append("")
    return lines


def render_markdown(run: RunInfo, gates: Mapping[str, GateResult], digest: str) -> str:
    """Render the sign-off as Markdown, ending with the content ``digest``.

    Text from the run and the checks is escaped, so a message cannot add markup
    or raw HTML to the document.
    """
    lines = [f"# Deployment sign-off: {markdown_text(run.stack)}", ""]
    fields = [[name, markdown_text(value)] for name, value in _run_fields(run)]
    lines.extend(_markdown_table(["Field", "Value"], fields))
    lines.extend(["", f"**Deployment verdict: {deployment_verdict(gates)}**", ""])

    lines.extend(["## Versions", ""])
    if run.versions:
        rows = [
            [markdown_text(version.name), markdown_text(_render_version(version))]
            for version in run.versions
        ]
        lines.extend(_markdown_table(["Component", "Version"], rows))
    else:
        lines.append("No versions recorded.")
    lines.append("")

    lines.extend(["## Attestations", ""])
    if run.attestations:
        rows = [
            [
                markdown_text(field)
                for field in (item.item, item.note, item.operator, item.at)
            ]
            for item in run.attestations
        ]
        lines.extend(_markdown_table(["Item", "Note", "Operator", "At"], rows))
    else:
        lines.append("No attestations recorded.")
    lines.append("")

    views = gate_views(gates)
    lines.extend(["## Gates", ""])
    if views:
        rows = [
            [
                markdown_text(gate.name),
                gate.verdict,
                "yes" if gate.blocking else "no",
                str(gate.passed),
                str(gate.failed),
                str(gate.errors),
                str(gate.skipped),
            ]
            for gate in views
        ]
        header = [
            "Gate",
            "Verdict",
            "Blocking",
            "Passed",
            "Failed",
            "Errors",
            "Skipped",
        ]
        lines.extend(_markdown_table(header, rows))
    else:
        lines.append("No checks joined a gate.")
    lines.append("")

    for gate in views:
        lines.extend(_markdown_gate(gate))

    lines.extend(["---", "", f"Content digest ({DIGEST_DESCRIPTION}): `{digest}`", ""])
    return "\n".join(lines)


# HTML


@functools.cache
def _template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_stackcheck.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(
    run: RunInfo,
    gates: Mapping[str, GateResult],
    digest: str,
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """Render the sign-off as one self-contained HTML page, ending with ``digest``.

    All text from the run and the checks is HTML-escaped. Each of
    ``extra_sections`` is a (title, body) pair: the title is escaped, but the body
    is inserted as it is, so it must already be safe HTML, such as an inline SVG
    plot. The sections appear after the gates and before the digest.
    """
    template = _template_environment().get_template(HTML_TEMPLATE)
    return template.render(
        run=run,
        run_fields=_run_fields(run),
        verdict=deployment_verdict(gates),
        blocked=bool(blocking_gates(gates)),
        versions=[(version.name, _render_version(version)) for version in run.versions],
        attestations=run.attestations,
        gates=gate_views(gates),
        digest=digest,
        digest_description=DIGEST_DESCRIPTION,
        extra_sections=[(title, Markup(body)) for title, body in extra_sections],
    )


def write_signoff(
    directory: Path,
    run: RunInfo,
    gates: Mapping[str, GateResult],
    extra_sections: Sequence[tuple[str, str]] = (),
) -> dict[str, Path]:
    """Write ``gates.json``, ``signoff.md`` and ``signoff.html`` into ``directory``.

    The directory is created if missing, and existing files are overwritten.
    Returns the paths under the keys ``json``, ``markdown`` and ``html``.
    ``extra_sections`` goes to ``render_html`` unchanged.
    """
    document = build_document(run, gates)
    digest: str = document[DIGEST_KEY]

    paths = {
        "json": directory / JSON_NAME,
        "markdown": directory / MARKDOWN_NAME,
        "html": directory / HTML_NAME,
    }
    contents = {
        "json": dump_document(document),
        "markdown": render_markdown(run, gates, digest),
        "html": render_html(run, gates, digest, extra_sections),
    }

    directory.mkdir(parents=True, exist_ok=True)
    for key, path in paths.items():
        path.write_text(contents[key], encoding="utf-8")
    return paths
