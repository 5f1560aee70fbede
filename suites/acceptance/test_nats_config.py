"""Pre-production: NATS keeps what it acknowledges and carries the largest request.

These checks read the server's configuration from ``/varz`` and change
nothing, so they run on every stack, including one whose policy forbids
chaos. The chaos gate proves the same settings under faults, but only where
faults are allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_stackcheck.chaos.jetstream import store_space, sync_verdict
from pytest_stackcheck.probes import nats
from pytest_stackcheck.probes.nats_config import (
    file_store_problems,
    filesystem_type,
    jetstream_config,
    memory_store_problem,
    payload_problem,
)

LLM_ROLE = "llm-server"
BODY_LIMIT_KEY = "load.proxy.max_body_bytes"


def _varz(stack) -> dict[str, Any]:
    with httpx.Client(timeout=stack.profile.doc.timeouts.check_s) as client:
        return nats.monitor(client, stack.nats_monitor_url, "/varz")


def _inside_local_stack(stack, path: str) -> bool:
    # The embedded stack keeps its store in its own temporary directory, which
    # may be a tmpfs. That is on purpose, because the run deletes it anyway.
    if stack.workdir is None:
        return False
    return Path(path).resolve().is_relative_to(Path(stack.workdir).resolve())


def _require_jetstream(stack) -> None:
    if not stack.profile.doc.nats.jetstream:
        pytest.skip("the profile says this stack does not use JetStream")


@pytest.mark.gate("preprod", item="JetStream syncs acknowledged writes")
def test_writes_synced_before_ack(stack, evidence):
    _require_jetstream(stack)
    accepted = stack.profile.doc.chaos.accepted_loss_window_s

    with httpx.Client(timeout=stack.profile.doc.timeouts.check_s) as client:
        varz = nats.monitor(client, stack.nats_monitor_url, "/varz")
        jsz = nats.monitor(client, stack.nats_monitor_url, "/jsz")

    verdict = sync_verdict(varz, accepted, jsz)

    evidence.record("jetstream.sync_always", verdict.sync_always)
    evidence.record("jetstream.sync_interval", verdict.sync_interval_s, "s")
    evidence.record("jetstream.accepted_loss_window", accepted, "s")
    assert verdict.ok, verdict.message


@pytest.mark.gate("preprod", item="JetStream file store persistent and sized")
def test_file_store_persistent_and_sized(stack, evidence):
    _require_jetstream(stack)
    varz = _varz(stack)
    config = jetstream_config(varz)

    problems = file_store_problems(varz)
    space = store_space(varz)

    evidence.record("jetstream.store_dir", str(config.get("store_dir", "")))
    evidence.record("jetstream.max_file_store", config.get("max_storage", 0), "bytes")
    if space is None:
        # NOTE: free space is read with statvfs, so a store on another host
        # is judged on its configuration only.
        evidence.record("jetstream.store_free", "not measured: not on this machine")
    else:
        fs_type = filesystem_type(space.store_dir)
        evidence.record("jetstream.store_free", space.free_bytes, "bytes")
        evidence.record("jetstream.store_filesystem", fs_type)
        if space.max_file_store > 0 and not space.ok:
            problems.append(space.describe())
        if not _inside_local_stack(stack, space.store_dir):
            problems.append(memory_store_problem(space.store_dir, fs_type))
    problems = [problem for problem in problems if problem]
    assert not problems, "; ".join(problems)


@pytest.mark.gate("preprod", item="NATS carries the largest LLM request")
def test_max_payload_fits_llm_requests(stack, evidence):
    services = stack.profile.doc.services
    needed = stack.profile.doc.load.proxy.max_body_bytes
    over_nats = [
        name
        for name, spec in services.items()
        if spec.nats and (spec.role or name) == LLM_ROLE
    ]
    if not over_nats or needed == 0:
        pytest.skip(
            f"no {LLM_ROLE} service uses NATS, or {BODY_LIMIT_KEY} = 0 declares "
            "no request size"
        )

    varz = _varz(stack)

    evidence.record("nats.max_payload", varz.get("max_payload", 0), "bytes")
    evidence.record("llm.max_request", needed, "bytes")
    problem = payload_problem(varz, needed, BODY_LIMIT_KEY)
    assert not problem, f"{', '.join(over_nats)}: {problem}"
