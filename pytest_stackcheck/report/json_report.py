"""The machine-readable gate report, ``gates.json``, and its content digest.

The digest is the SHA-256 hex digest of the document without its ``digest`` key,
serialised as ``json.dumps(document, sort_keys=True, separators=(",", ":"))``
with Python's defaults otherwise (ASCII output). Anyone holding ``gates.json``
can recompute it with those two lines, and the Markdown and HTML sign-offs print
the same value so that all three files can be matched to one run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_stackcheck.gates import (
    Attestation,
    CheckResult,
    Evidence,
    EvidenceValue,
    GateResult,
    Outcome,
    RunInfo,
    Verdict,
)

FORMAT_VERSION = 1
DIGEST_KEY = "digest"

# Words for a blocking gate's verdict in "BLOCKED (day1 failed)".
_BLOCKING_VERDICT_WORDS = {Verdict.FAIL: "failed", Verdict.ERROR: "errored"}


def blocking_gates(gates: Mapping[str, GateResult]) -> list[GateResult]:
    """Return the gates that stop the deploy, in the order of ``gates``."""
    return [gate for gate in gates.values() if gate.blocks]


def deployment_verdict(gates: Mapping[str, GateResult]) -> str:
    """Return ``OK`` or ``BLOCKED (...)`` naming each gate that blocks the deploy.

    The result follows ``GateResult.blocks`` only, so a run without any gates,
    or with blocking gates whose checks were all skipped, is ``OK``.
    """
    blockers = blocking_gates(gates)
    if not blockers:
        return "OK"

    reasons = [
        f"{gate.name} {_BLOCKING_VERDICT_WORDS[gate.verdict]}" for gate in blockers
    ]
    return f"BLOCKED ({', '.join(reasons)})"


def _json_number(value: EvidenceValue) -> EvidenceValue:
    # Strict JSON has no NaN or infinity, so those floats become strings.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _evidence_entry(evidence: Evidence) -> dict[str, Any]:
    return {
        "name": evidence.name,
        "value": _json_number(evidence.value),
        "unit": evidence.unit,
    }


def _attestation_entry(attestation: Attestation) -> dict[str, Any]:
    return {
        "item": attestation.item,
        "note": attestation.note,
        "operator": attestation.operator,
        "at": attestation.at,
    }


def _check_entry(check: CheckResult) -> dict[str, Any]:
    return {
        "nodeid": check.nodeid,
        "item": check.item,
        "outcome": check.outcome.value,
        "duration_s": _json_number(check.duration_s),
        "message": check.message,
        "evidence": [_evidence_entry(evidence) for evidence in check.evidence],
    }


def _gate_entry(gate: GateResult) -> dict[str, Any]:
    return {
        "name": gate.name,
        "verdict": gate.verdict.value,
        "blocking": gate.blocking,
        "blocks": gate.blocks,
        "waived": gate.waived,
        "counts": {outcome.value: gate.count(outcome) for outcome in Outcome},
        "checks": [_check_entry(check) for check in gate.checks],
    }


def compute_digest(document: Mapping[str, Any]) -> str:
    """Hash ``document`` without its ``digest`` key and return the SHA-256 hex.

    Raises ``ValueError`` if the document contains NaN or an infinite float, because
    strict JSON cannot represent them.
    """
    content = {key: value for key, value in document.items() if key != DIGEST_KEY}
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_document(run: RunInfo, gates: Mapping[str, GateResult]) -> dict[str, Any]:
    """Build the ``gates.json`` document for one run, digest included.

    Gates and checks keep the order of ``gates``. NaN and infinite floats in
    evidence or durations are stored as the strings ``"nan"``, ``"inf"`` and
    ``"-inf"``.
    """
    blockers = blocking_gates(gates)
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run": {
            "stack": run.stack,
            "profile_path": run.profile_path,
            "provisioner": run.provisioner,
            "operator": run.operator,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "exit_status": run.exit_status,
        },
        "deployment": {
            "verdict": deployment_verdict(gates),
            "blocked": bool(blockers),
            "blocked_by": [gate.name for gate in blockers],
        },
        "versions": [_evidence_entry(version) for version in run.versions],
        "attestations": [_attestation_entry(item) for item in run.attestations],
        "gates": [_gate_entry(gate) for gate in gates.values()],
    }

    document[DIGEST_KEY] = compute_digest(document)
    return document


def dump_document(document: Mapping[str, Any]) -> str:
    """Serialise a built document as indented UTF-8 JSON text for a file."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path, run: RunInfo, gates: Mapping[str, GateResult]) -> None:
    """Build the run's document and write it to ``path``, creating parent folders."""
    document = build_document(run, gates)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_document(document), encoding="utf-8")
