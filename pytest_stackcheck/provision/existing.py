"""A stack that is already deployed: nothing is started, nothing is stopped."""

from __future__ import annotations

import time

from pytest_stackcheck.profile import Profile
from pytest_stackcheck.provision.base import LiveStack


class ExistingProvisioner:
    """Attach to a deployed stack exactly as its profile describes it."""

    def up(self, profile: Profile) -> LiveStack:
        """Return the profile as a live stack; the checks judge its health."""
        return LiveStack(profile=profile, started_at=time.time(), owned=False)

    def down(self, stack: LiveStack) -> None:
        """Leave the deployed stack alone."""
