"""Every app service comes back from every kind of death (restart policy).

systemd's ``Restart=on-failure`` treats exit status 0 and SIGTERM, SIGHUP,
SIGINT and SIGPIPE as clean, so a service that exits 0 or is killed by an
unhandled SIGTERM stays down. The local stack mirrors the profile's
``restart`` in supervisord (``always`` is ``autorestart=true``,
``on-failure`` is ``autorestart=unexpected`` with ``exitcodes=0``), where
the same deaths leave the program EXITED. On a deployed stack the unit's
own ``Restart=`` decides, and the restart count is systemd's NRestarts.
Each death below must be followed by the service healthy again within the
budget, with its restart count incremented.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_stackcheck.chaos.faults import FaultKind
from pytest_stackcheck.chaos.recovery import (
    PROBE_TIMEOUT_S,
    measure_recovery,
    probes_for,
)
from pytest_stackcheck.probes.host import restart_policy

DEATHS = [FaultKind.KILL, FaultKind.TERM, FaultKind.EXIT_ZERO]


@pytest.mark.gate("chaos", item="service restarts after every kind of death")
@pytest.mark.parametrize("fault", DEATHS, ids=[kind.value for kind in DEATHS])
def test_service_restarts_after_death(
    stack, chaos, service_control, evidence, service_name, fault
):
    policy = restart_policy(stack, service_name)
    budget = stack.profile.doc.chaos.budget_s(service_name)
    evidence.record(f"{service_name}.restart_policy", policy)

    injection = chaos.inject(fault, service_name)
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        recovery = measure_recovery(
            f"{service_name} after {fault.value}",
            probes_for(stack, client, [service_name]),
            injection.at,
            budget,
        )
    recovery.record(evidence)
    restarts = service_control.restart_count(service_name)
    evidence.record(f"{service_name}.restart_count", restarts)

    running = service_control.is_running(service_name)
    assert running, (
        f"{service_name} stayed down after {fault.value} "
        f"({service_control.describe(service_name)}): "
        + _policy_reason(policy)
        + "; set Restart=always in the unit (restart = 'always' for "
        f"services.{service_name} in the profile)"
    )
    assert recovery.within_budget, recovery.describe()
    assert restarts > injection.restart_count_before, (
        f"{service_name}: restart count stayed {restarts} after {fault.value}, "
        "so the manager did not restart it (something else started it)"
    )


def _policy_reason(policy: str) -> str:
    if policy == "on-failure":
        return (
            "its restart policy is 'on-failure', which treats exit status 0 and "
            "SIGTERM as a clean stop and does not restart"
        )
    if policy == "no":
        return "its restart policy is 'no', so the manager restarts nothing"
    return f"its restart policy is {policy!r}, yet the manager did not restart it"
