"""The JetStream store has room for its limit and fails loudly when full.

When the store's filesystem fills before ``max_file_store``, nats-server
stops storing and (depending on the version) disables JetStream, while a
probe of ``/`` keeps returning 200 and core pub/sub still works. So free
space below ``max_file_store`` is a configuration fault, and a full store
must reject publishes with an error, never acknowledge one it did not
store, keep the messages it has, and turn ``/healthz`` non-200 when it
stops replying to publishes.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_stackcheck.chaos.jetstream import store_space
from pytest_stackcheck.chaos.store_fill import fill_store
from pytest_stackcheck.probes import nats

FILL_STREAM = "STACKCHECK_FILL"


def _varz(stack):
    with httpx.Client(timeout=stack.profile.doc.timeouts.check_s) as client:
        return nats.monitor(client, stack.nats_monitor_url, "/varz")


def _local_space(stack):
    space = store_space(_varz(stack))
    if space is None:
        # NOTE: the store directory is read with statvfs, so a store on another
        # host is not measured; testinfra could read it there.
        pytest.skip("the JetStream store directory is not on this machine")
    return space


@pytest.mark.gate("chaos", item="JetStream store has room for max_file_store")
def test_jetstream_store_has_room(stack, evidence):
    space = _local_space(stack)

    evidence.record("jetstream.store_free", space.free_bytes, "bytes")
    evidence.record("jetstream.max_file_store", space.max_file_store, "bytes")
    assert space.ok, space.describe()


@pytest.mark.gate("chaos", item="full JetStream store rejects publishes loudly")
def test_full_store_rejects_publishes(stack, chaos, evidence):
    limit = stack.profile.doc.chaos.max_fill_bytes
    space = _local_space(stack)
    fill_bytes = min(space.free_bytes, space.max_file_store)
    if fill_bytes > limit:
        pytest.skip(
            f"filling the store takes {fill_bytes} bytes, above "
            f"chaos.max_fill_bytes = {limit}"
        )

    result = fill_store(
        stack.nats_url, stack.nats_monitor_url, FILL_STREAM, fill_bytes + limit
    )

    evidence.record("fill.acknowledged", result.acknowledged)
    evidence.record("fill.present", result.present)
    evidence.record("fill.failure", result.failure or "none")
    evidence.record("fill.failure_time", result.failure_s, "s")
    evidence.record("fill.healthz_status", result.healthz_status)
    problems = result.problems()
    assert not problems, "; ".join(problems)
