"""Fixtures of the gpu suite."""

from __future__ import annotations

import pytest

from pytest_stackcheck.gpu.session import GpuSession


@pytest.fixture(scope="session")
def gpu(stack):
    """The GPU host of the stack, probed once per session (per xdist worker).

    Call ``gpu.host()`` or ``gpu.devices()`` first in a check: they skip it
    when no GPU is present and none is required, and fail it when one is.
    """
    return GpuSession(stack)
