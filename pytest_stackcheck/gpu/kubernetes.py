"""GPU checks through the Kubernetes API: allocatable GPUs and a GPU test pod.

A node advertises ``nvidia.com/gpu`` in its allocatable resources only while
the NVIDIA device plugin runs there and found a GPU. A pod that requests one
GPU and runs ``nvidia-smi -L`` proves that scheduling, the container runtime
hook and the driver inside the container all work. The check deletes the
pod when it ends, whether it passed or failed.

Only the API server's REST endpoints are used (``/api/v1/nodes`` and the pod
endpoints of one namespace), through httpx with a bearer token.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from pytest_stackcheck.errors import ProbeError
from pytest_stackcheck.gpu.settings import KubernetesGpuSpec

log = logging.getLogger("pytest_stackcheck")

GPU_RESOURCE = "nvidia.com/gpu"
REQUEST_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 2.0
LOG_TAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """The GPUs one node advertises to the scheduler."""

    node: str
    allocatable: int
    capacity: int


@dataclass(frozen=True, slots=True)
class PodRun:
    """The end state of the GPU test pod: its phase, the reason and its output."""

    name: str
    phase: str
    reason: str
    log: str
    seconds: float

    @property
    def gpu_lines(self) -> list[str]:
        """Return the ``GPU N: MODEL (UUID: ...)`` lines of nvidia-smi -L."""
        return [line for line in self.log.splitlines() if line.startswith("GPU ")]


class KubernetesApi:
    """A minimal client for the node and pod endpoints of the API server."""

    def __init__(self, spec: KubernetesGpuSpec) -> None:
        self.spec = spec
        headers = {"Accept": "application/json"}
        token = os.environ.get(spec.token_env, "") if spec.token_env else ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: str | bool = spec.ca_file or True
        self.client = httpx.Client(
            base_url=spec.api_url.rstrip("/"),
            headers=headers,
            verify=verify,
            timeout=REQUEST_TIMEOUT_S,
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request, turning transport and HTTP errors into ProbeError."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProbeError(
                f"Kubernetes API {self.spec.api_url}: {method} {path} failed "
                f"({type(exc).__name__}: {exc}); check gpu.kubernetes.api_url and "
                "that this machine can reach it"
            ) from exc
        if response.status_code in (401, 403):
            raise ProbeError(
                f"Kubernetes API {self.spec.api_url}: {method} {path} was "
                f"rejected with {response.status_code}; set the token in the "
                f"variable named by gpu.kubernetes.token_env "
                f"({self.spec.token_env or 'not set'}) and grant it list nodes "
                "and create, get and delete pods"
            )
        if response.is_error:
            raise ProbeError(
                f"Kubernetes API {self.spec.api_url}: {method} {path} returned "
                f"{response.status_code}: {response.text[:300]}"
            )
        return response

    def gpu_nodes(self) -> list[NodeGpus]:
        """Return every selected node with the GPUs it advertises."""
        params = {"labelSelector": self.spec.node_selector}
        body = self.request("GET", "/api/v1/nodes", params=params).json()
        nodes: list[NodeGpus] = []
        for item in body.get("items") or []:
            status = item.get("status") or {}
            nodes.append(
                NodeGpus(
                    node=str(item.get("metadata", {}).get("name", "?")),
                    allocatable=_count(status.get("allocatable")),
                    capacity=_count(status.get("capacity")),
                )
            )
        return nodes

    def run_gpu_pod(self) -> PodRun:
        """Start a pod that requests one GPU, wait for it to end, then delete it."""
        name = f"stackcheck-gpu-{secrets.token_hex(4)}"
        pods = f"/api/v1/namespaces/{self.spec.namespace}/pods"
        self.request("POST", pods, json=self._pod_manifest(name))
        log.info("started GPU test pod %s/%s", self.spec.namespace, name)
        started = time.monotonic()
        try:
            phase, reason = self._wait_for_end(f"{pods}/{name}", started)
            text = ""
            if phase in ("Succeeded", "Failed"):
                text = self.request("GET", f"{pods}/{name}/log").text
            return PodRun(
                name, phase, reason, text[-LOG_TAIL_CHARS:], time.monotonic() - started
            )
        finally:
            try:
                now = {"gracePeriodSeconds": 0}
                self.request("DELETE", f"{pods}/{name}", params=now)
            except ProbeError as exc:
                log.error("could not delete GPU test pod %s: %s", name, exc)

    def _pod_manifest(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "nvidia-smi",
                    "image": self.spec.image,
                    "command": ["nvidia-smi", "-L"],
                    "resources": {"limits": {GPU_RESOURCE: 1}},
                }
            ],
        }
        if self.spec.runtime_class:
            spec["runtimeClassName"] = self.spec.runtime_class
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/managed-by": "pytest-stackcheck"},
            },
            "spec": spec,
        }

    def _wait_for_end(self, path: str, started: float) -> tuple[str, str]:
        """Poll the pod until it succeeds or fails, or the timeout passes."""
        phase, reason = "Unknown", ""
        deadline = started + self.spec.timeout_s
        while True:
            pod = self.request("GET", path).json()
            status = pod.get("status") or {}
            phase = str(status.get("phase", "Unknown"))
            reason = _pod_reason(status)
            if phase in ("Succeeded", "Failed"):
                return phase, reason
            if time.monotonic() + POLL_INTERVAL_S > deadline:
                return phase, reason or f"still {phase} after {self.spec.timeout_s:g} s"
            time.sleep(POLL_INTERVAL_S)


def _count(resources: object) -> int:
    """Return the nvidia.com/gpu quantity of a resource list, 0 if absent."""
    if not isinstance(resources, dict):
        return 0
    value = str(resources.get(GPU_RESOURCE, "0"))
    return int(value) if value.isdigit() else 0


def _pod_reason(status: dict[str, Any]) -> str:
    """Return why a pod is not running: the scheduler's or the container's reason."""
    conditions = status.get("conditions") or []
    for condition in conditions:
        unscheduled = condition.get("type") == "PodScheduled"
        if unscheduled and condition.get("status") == "False":
            return f"{condition.get('reason', '')}: {condition.get('message', '')}"

    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            detail = state.get(key) or {}
            if not detail.get("reason"):
                continue
            text = f"{detail['reason']}"
            if "exitCode" in detail:
                text += f" (exit code {detail['exitCode']})"
            if detail.get("message"):
                text += f": {detail['message']}"
            return text
    return str(status.get("reason", ""))


def check_allocatable(nodes: list[NodeGpus], count: int, selector: str) -> list[str]:
    """Check that the selected nodes advertise at least ``count`` GPUs in all."""
    where = f"matching '{selector}'" if selector else "in the cluster"
    if not nodes:
        return [
            f"no node {where}; fix gpu.kubernetes.node_selector or add the GPU node"
        ]
    total = sum(node.allocatable for node in nodes)
    if total >= max(count, 1):
        return []
    listed = ", ".join(
        f"{node.node} (allocatable {node.allocatable}, capacity {node.capacity})"
        for node in nodes
    )
    if any(node.capacity > node.allocatable for node in nodes):
        # The device plugin keeps an unhealthy GPU in capacity but takes it
        # out of allocatable, which it does after an Xid error, for example.
        cause = (
            "the NVIDIA device plugin found the GPU but marked it unhealthy: "
            "check its logs and the node's kernel log for Xid errors"
        )
    else:
        cause = (
            "the NVIDIA device plugin is not running or found no GPU: check its "
            "daemonset pods and their logs"
        )
    return [
        f"nodes {where} advertise {total} allocatable {GPU_RESOURCE}, expected at "
        f"least {max(count, 1)}: {listed}; {cause}"
    ]


def check_pod(run: PodRun, model: str) -> list[str]:
    """Check that the GPU test pod succeeded and nvidia-smi listed the GPU."""
    if run.phase != "Succeeded":
        return [
            f"GPU test pod {run.name} ended {run.phase} after {run.seconds:.0f} s: "
            f"{run.reason or 'no reason given'}; output: {run.log.strip() or '(none)'}"
        ]
    lines = run.gpu_lines
    if not lines:
        return [
            f"GPU test pod {run.name} succeeded but nvidia-smi -L listed no GPU: "
            f"{run.log.strip() or '(no output)'}"
        ]
    if model and not any(f": {model} (" in line for line in lines):
        return [
            f"GPU test pod {run.name} sees {'; '.join(lines)}, not the expected "
            f"model {model!r}"
        ]
    return []
