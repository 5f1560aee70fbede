"""The gpu gate's Kubernetes checks against a stand-in API server.

No Kubernetes cluster can run on this machine, so ``kube_standin``
serves the node and pod endpoints from a scenario on a loopback port. The
suite runs unchanged in a pytester subprocess and reaches it over HTTP.
"""

from __future__ import annotations

import pytest
from helpers import SUITES
from kube_standin import TOKEN, FakeKubernetes, gpu_node

KUBE_SUITE = str(SUITES / "gpu" / "test_kubernetes.py")

PROFILE = """
[stack]
name = "gpu-cluster"
provisioner = "existing"

[postgres]
databases = ["app"]

[nats]

[nginx]
routes = [{{ prefix = "/", service = "web" }}]

[services.web]
port = 4000

[gpu]
model = "NVIDIA GeForce RTX 4080"

[gpu.kubernetes]
api_url = "{url}"
token_env = "STACKCHECK_KUBE_TOKEN"
node_selector = "nvidia.com/gpu.present=true"
timeout_s = {timeout}
"""


@pytest.fixture
def cluster(monkeypatch):
    """A stand-in Kubernetes API server with one node that has one GPU."""
    monkeypatch.setenv("STACKCHECK_KUBE_TOKEN", TOKEN)
    fake = FakeKubernetes()
    yield fake
    fake.stop()


def run_kube(run_suite, tmp_path, cluster, timeout=30.0):
    path = tmp_path / "cluster.toml"
    path.write_text(PROFILE.format(url=cluster.url, timeout=timeout), encoding="utf-8")
    return run_suite(path, KUBE_SUITE, "-m", "gpu", "-rs")


def test_healthy_cluster_passes(cluster, run_suite, tmp_path):
    """Stand-in: one node with one GPU, and the pod lists the RTX 4080."""
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=2)
    scenario = cluster.scenario
    assert scenario.node_queries == ["nvidia.com/gpu.present=true"]
    assert len(scenario.created) == 1
    pod = scenario.created[0]
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert container["command"] == ["nvidia-smi", "-L"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert scenario.deleted == [pod["metadata"]["name"]]


def test_no_allocatable_gpu_fails(cluster, run_suite, tmp_path):
    """Stand-in: the node advertises no nvidia.com/gpu (no device plugin)."""
    cluster.scenario.nodes = [gpu_node("gpu-node-1", 0)]
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "advertise 0 allocatable nvidia.com/gpu, expected at least 1" in output
    assert "gpu-node-1 (allocatable 0, capacity 0)" in output
    assert "NVIDIA device plugin" in output


def test_unhealthy_gpu_fails(cluster, run_suite, tmp_path):
    """Stand-in: capacity 1 but allocatable 0, as after the plugin saw an Xid."""
    node = gpu_node("gpu-node-1", 1)
    del node["status"]["allocatable"]["nvidia.com/gpu"]
    cluster.scenario.nodes = [node]
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "advertise 0 allocatable nvidia.com/gpu, expected at least 1" in output
    assert "gpu-node-1 (allocatable 0, capacity 1)" in output
    assert "marked it unhealthy" in output


def test_no_matching_node_fails(cluster, run_suite, tmp_path):
    """Stand-in: the label selector matches no node."""
    cluster.scenario.nodes = []
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*no node matching 'nvidia.com/gpu.present=true'*node_selector*"]
    )


def test_unschedulable_pod_fails(cluster, run_suite, tmp_path):
    """Stand-in: the pod stays Pending for lack of a GPU, and is still deleted."""
    cluster.scenario.pod_status = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    result = run_kube(run_suite, tmp_path, cluster, timeout=3.0)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ended Pending after * s: Unschedulable: 0/1 nodes are available: "
            "1 Insufficient nvidia.com/gpu.*"
        ]
    )
    assert len(cluster.scenario.deleted) == 1


def test_failed_pod_reports_exit_code(cluster, run_suite, tmp_path):
    """Stand-in: nvidia-smi in the pod exits 9, the driver is not loaded."""
    cluster.scenario.pod_status = {
        "phase": "Failed",
        "containerStatuses": [
            {"state": {"terminated": {"reason": "Error", "exitCode": 9}}}
        ],
    }
    cluster.scenario.pod_log = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        "driver.\n"
    )
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "ended Failed" in output
    assert "Error (exit code 9)" in output
    assert "couldn't communicate with the NVIDIA driver" in output


def test_pod_with_other_model_fails(cluster, run_suite, tmp_path):
    """Stand-in: the pod was given an RTX 3060 instead of the RTX 4080."""
    cluster.scenario.pod_log = "GPU 0: NVIDIA GeForce RTX 3060 (UUID: GPU-1)\n"
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*sees GPU 0: NVIDIA GeForce RTX 3060*not the expected model*"]
    )


def test_rejected_token_fails(cluster, run_suite, tmp_path, monkeypatch):
    """Stand-in: the API server rejects the token with 401."""
    monkeypatch.setenv("STACKCHECK_KUBE_TOKEN", "wrong")
    result = run_kube(run_suite, tmp_path, cluster)

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*was rejected with 401*gpu.kubernetes.token_env*"])
    assert "wrong" not in result.stdout.str()
    assert cluster.scenario.created == []


def test_without_api_url_skips(run_suite, tmp_path):
    path = tmp_path / "cluster.toml"
    text = PROFILE.format(url="http://127.0.0.1:9", timeout=1.0)
    path.write_text(text.replace('api_url = "http://127.0.0.1:9"\n', ""))
    result = run_suite(path, KUBE_SUITE, "-m", "gpu", "-rs")

    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*gpu.kubernetes.api_url is empty*"])
