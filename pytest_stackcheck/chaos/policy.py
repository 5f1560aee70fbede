"""Whether a stack allows chaos: the profile's ``policy.destructive`` key."""

from __future__ import annotations

import pytest

from pytest_stackcheck.control.base import ServiceControl
from pytest_stackcheck.errors import StackcheckError
from pytest_stackcheck.profile import Profile


class ChaosRefused(StackcheckError):
    """A fault was requested on a stack whose profile does not allow chaos."""


def refusal(profile: Profile) -> str:
    """Return why chaos is refused on ``profile``, or '' when it is allowed."""
    if profile.doc.policy.destructive:
        return ""
    return (
        f"chaos refused on stack {profile.name}: stack profile {profile.path} "
        "has policy.destructive = false, and faults kill, stop and pause its "
        "services; set [policy] destructive = true only on a stack where "
        "that is allowed"
    )


def require_chaos_allowed(profile: Profile) -> None:
    """Raise ChaosRefused unless the profile allows destructive work."""
    reason = refusal(profile)
    if reason:
        raise ChaosRefused(reason)


def refuse_selected_chaos(
    config: pytest.Config, profile: Profile | None, items: list[pytest.Item]
) -> None:
    """Reject a run that selected chaos tests on a stack that forbids them.

    When ``-m`` names the chaos gate the operator asked for chaos, so the run
    stops with a usage error before any test starts. Otherwise (a plain run
    of every suite) the chaos tests are skipped with the same reason, so the
    other gates still give their verdicts.
    """
    if profile is None:
        return
    reason = refusal(profile)
    chaos_items = [item for item in items if item.get_closest_marker("chaos")]
    if not reason or not chaos_items:
        return
    if "chaos" in (config.option.markexpr or ""):
        raise pytest.UsageError(reason)
    for item in chaos_items:
        item.add_marker(pytest.mark.skip(reason=reason))


# The profile key that names the unit of each server under systemd.
SERVER_UNIT_KEYS = {
    "postgresql": "postgres.unit",
    "nats": "nats.unit",
    "nginx": "nginx.unit",
}


def require_controlled(control: ServiceControl, name: str) -> None:
    """Skip the calling check when ``name`` is not under the stack's control."""
    if name in control.names():
        return
    key = SERVER_UNIT_KEYS.get(name, f"services.{name}.unit")
    pytest.skip(
        f"{name} is not under chaos control (controlled: "
        f"{', '.join(control.names())}): set {key} to its systemd unit in the "
        "profile to run this check"
    )
