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


@pytest.fixture(scope="session")
def kubernetes_api(stack):
    """A client for the Kubernetes API named by ``gpu.kubernetes.api_url``.

    Checks that use it are skipped when the profile names no API server.
    """
    from pytest_stackcheck.gpu.kubernetes import KubernetesApi

    spec = stack.profile.doc.gpu.kubernetes
    if not spec.api_url:
        pytest.skip(
            "the stack does not run on Kubernetes: gpu.kubernetes.api_url is empty"
        )
    api = KubernetesApi(spec)
    yield api
    api.close()
