"""A locust user that fetches ``/`` as fast as it can: for measuring the harness.

Used by ``bench/bench_load.py`` against a static nginx endpoint, so that the
figures measure the load generator and not an application::

    locust -f load/static.py --headless --host http://127.0.0.1:8080 -u 8 -t 10s
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task


class StaticUser(FastHttpUser):
    """Fetch ``/`` back to back."""

    wait_time = constant(0)

    @task
    def fetch(self) -> None:
        self.client.get("/")
