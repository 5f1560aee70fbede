"""Stand-in for a Kubernetes API server, for machines without a cluster.

It serves the endpoints the GPU checks use on a loopback port: list nodes,
and create, get, read the log of and delete pods. It replies from a
scenario the test sets and records the pods it was asked to create and
delete. It checks the
bearer token like an API server that rejects anonymous requests.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "stand-in-token"
POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")


@dataclass
class Scenario:
    """What the stand-in cluster returns; tests edit it before the run."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    pod_status: dict[str, Any] = field(default_factory=lambda: {"phase": "Succeeded"})
    pod_log: str = (
        "GPU 0: NVIDIA GeForce RTX 4080 "
        "(UUID: GPU-00000000-1111-2222-3333-444444444444)\n"
    )
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    node_queries: list[str] = field(default_factory=list)


def gpu_node(name: str, gpus: int) -> dict[str, Any]:
    """Return a Node object advertising ``gpus`` nvidia.com/gpu."""
    resources = {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": str(gpus)}
    if gpus == 0:
        del resources["nvidia.com/gpu"]
    return {
        "metadata": {"name": name},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


class FakeKubernetes:
    """The stand-in API server, running in a thread until ``stop``."""

    def __init__(self) -> None:
        self.scenario = Scenario(nodes=[gpu_node("gpu-node-1", 1)])
        scenario = self.scenario

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _reply(self, status: int, body: object) -> None:
                text = isinstance(body, str)
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                content = "text/plain" if text else "application/json"
                self.send_header("Content-Type", content)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._reply(401, {"kind": "Status", "reason": "Unauthorized"})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                parts = urlsplit(self.path)
                if parts.path == "/api/v1/nodes":
                    query = parse_qs(parts.query).get("labelSelector", [""])[0]
                    scenario.node_queries.append(query)
                    self._reply(200, {"kind": "NodeList", "items": scenario.nodes})
                    return
                match = POD_PATH.match(parts.path)
                if not match or not match.group(2):
                    self._reply(404, {"kind": "Status", "reason": "NotFound"})
                elif match.group(3):
                    self._reply(200, scenario.pod_log)
                else:
                    pod = {"metadata": {"name": match.group(2)}}
                    self._reply(200, {**pod, "status": scenario.pod_status})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                manifest = json.loads(self.rfile.read(length))
                scenario.created.append(manifest)
                self._reply(201, manifest)

            def do_DELETE(self) -> None:
                if not self._authorised():
                    return
                match = POD_PATH.match(urlsplit(self.path).path)
                name = match.group(2) if match else ""
                scenario.deleted.append(name or "")
                self._reply(200, {"kind": "Status", "status": "Success"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
