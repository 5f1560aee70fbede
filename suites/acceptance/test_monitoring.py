"""Day-1 sign-off: the monitoring system scrapes every target of the stack.

A deploy that moved a port or broke an exporter leaves its Prometheus
target down, and the alerts that depend on it silent. The check reads the
Prometheus the profile names (``monitoring.prometheus_url``).
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.probes import prometheus
from pytest_stackcheck.probes.wait import require, wait_until


@pytest.mark.gate("day1", item="monitoring targets up")
def test_monitoring_targets_up(stack, evidence):
    spec = stack.profile.doc.monitoring
    timeouts = stack.profile.doc.timeouts
    if not spec.prometheus_url:
        pytest.skip(
            "no Prometheus to read: set monitoring.prometheus_url in the profile"
        )

    waited = wait_until(
        lambda: prometheus.read_targets(spec.prometheus_url, timeouts.check_s),
        lambda targets: not prometheus.target_problems(targets, spec),
        timeouts.check_s,
        max(timeouts.poll_s, 0.5),
    )
    for target in waited.last or []:
        evidence.record(f"{target.job}/{target.instance}", target.health)

    require(
        waited,
        f"every target of Prometheus at {spec.prometheus_url} is up",
        lambda targets: "; ".join(prometheus.target_problems(targets, spec)),
    )
