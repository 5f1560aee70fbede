"""The gpu gate on Kubernetes: GPUs advertised to the scheduler, and a GPU pod.

Both checks talk to the API server named by ``gpu.kubernetes.api_url`` and
are skipped, with that reason, when the profile names none.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu import kubernetes


@pytest.mark.gate("gpu", item="Kubernetes nodes advertise nvidia.com/gpu")
def test_gpu_allocatable(kubernetes_api, stack, evidence):
    spec = stack.profile.doc.gpu
    try:
        nodes = kubernetes_api.gpu_nodes()
    except ProbeError as exc:
        pytest.fail(str(exc), pytrace=False)

    for node in nodes:
        evidence.record(f"{node.node}.allocatable_gpus", node.allocatable)
        evidence.record(f"{node.node}.capacity_gpus", node.capacity)
    problems = kubernetes.check_allocatable(
        nodes, spec.count, spec.kubernetes.node_selector
    )
    assert not problems, "\n".join(problems)


@pytest.mark.gate("gpu", item="a pod requesting one GPU lists it")
def test_gpu_pod_lists_gpu(kubernetes_api, stack, evidence):
    spec = stack.profile.doc.gpu
    if not spec.kubernetes.pod_check:
        pytest.skip("gpu.kubernetes.pod_check = false: no GPU test pod is started")
    try:
        run = kubernetes_api.run_gpu_pod()
    except ProbeError as exc:
        pytest.fail(str(exc), pytrace=False)

    evidence.record("gpu_pod.phase", run.phase)
    evidence.record("gpu_pod.seconds", run.seconds, "s")
    evidence.record("gpu_pod.nvidia_smi", "; ".join(run.gpu_lines) or "none")
    problems = kubernetes.check_pod(run, spec.model)
    assert not problems, "\n".join(problems)
