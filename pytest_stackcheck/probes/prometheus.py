"""Read a Prometheus server's scrape targets and judge them.

The targets come from ``GET /api/v1/targets?state=active``; each carries its
``job`` and ``instance`` labels, its health (``up``, ``down`` or
``unknown`` before the first scrape), the last scrape error and the time of
the last scrape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from pytest_stackcheck.errors import ProbeError

if TYPE_CHECKING:
    from pytest_stackcheck.profile import MonitoringSpec

TARGETS_PATH = "/api/v1/targets?state=active"
# Prometheus reports a target that was never scraped with Go's zero time.
NEVER = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Target:
    """One active scrape target as Prometheus reports it."""

    job: str
    instance: str
    health: str
    last_error: str
    scrape_age_s: float | None

    def describe(self) -> str:
        """Return the target as ``job/instance health``."""
        return f"{self.job}/{self.instance} {self.health}"


def read_targets(base_url: str, timeout_s: float) -> list[Target]:
    """Return the active targets of the Prometheus at ``base_url``, or raise."""
    url = base_url.rstrip("/") + TARGETS_PATH
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProbeError(f"GET {url} failed: {exc}") from exc
    if not isinstance(document, dict) or document.get("status") != "success":
        raise ProbeError(f"GET {url} returned no target list: {str(document)[:300]}")

    now = datetime.now(UTC)
    active = document.get("data", {}).get("activeTargets", [])
    return [_target(entry, now) for entry in active if isinstance(entry, dict)]


def _target(entry: dict[str, Any], now: datetime) -> Target:
    labels = entry.get("labels") or {}
    scraped = _timestamp(str(entry.get("lastScrape", "")))
    age = None if scraped is None else (now - scraped).total_seconds()
    return Target(
        job=str(labels.get("job") or entry.get("scrapePool", "")),
        instance=str(labels.get("instance", entry.get("scrapeUrl", ""))),
        health=str(entry.get("health", "unknown")),
        last_error=str(entry.get("lastError", "")),
        scrape_age_s=age,
    )


def _timestamp(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None if moment <= NEVER else moment


def target_problems(targets: list[Target], spec: MonitoringSpec) -> list[str]:
    """Return one line per target that is not up, stale or missing."""
    if not targets:
        return [
            f"Prometheus at {spec.prometheus_url} has no active targets; check "
            "its scrape_configs"
        ]

    problems: list[str] = []
    for target in targets:
        if target.health != "up":
            error = target.last_error or "no scrape yet"
            problems.append(
                f"job {target.job} target {target.instance} is {target.health}: {error}"
            )
        elif target.scrape_age_s is not None and (
            target.scrape_age_s > spec.max_scrape_age_s
        ):
            problems.append(
                f"job {target.job} target {target.instance} was last scraped "
                f"{target.scrape_age_s:.0f} s ago (monitoring.max_scrape_age_s = "
                f"{spec.max_scrape_age_s:g})"
            )

    jobs = {target.job for target in targets}
    problems += [
        f"required job {job} has no target in Prometheus at "
        f"{spec.prometheus_url}; add a scrape config for it"
        for job in spec.required_jobs
        if job not in jobs
    ]
    return problems
