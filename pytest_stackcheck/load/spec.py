"""The ``[load]`` profile section: how much load to drive and the SLOs to meet.

Latencies are in milliseconds, rates per second, durations in seconds. The
defaults describe a short smoke load that any healthy gateway should carry;
a production profile sets its own users, duration and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_stackcheck.schema import SchemaError, spec


def _require(table: object, prefix: str, rule: str, names: tuple[str, ...]) -> None:
    """Raise SchemaError for the first field of ``names`` that breaks ``rule``."""
    for name in names:
        value = getattr(table, name)
        if rule == "positive" and not value > 0:
            raise SchemaError(
                f"{prefix}.{name}", value, "must be greater than 0", "set it above 0"
            )
        if rule == "non-negative" and not value >= 0:
            raise SchemaError(
                f"{prefix}.{name}", value, "must not be negative", "set it to 0 or more"
            )
        if rule == "share" and not 0 <= value <= 1:
            raise SchemaError(
                f"{prefix}.{name}",
                value,
                "a share must lie between 0 and 1",
                "write 0.01 for 1%",
            )


@dataclass(frozen=True, slots=True)
class GatewayLoad:
    """Locust load on the LLM gateway through nginx, and its SLOs."""

    route: str = spec(
        "/internal/llm/",
        help="set the nginx location prefix of the LLM gateway, for example "
        "'/internal/llm/'",
    )
    users: int = spec(4, help="set the number of concurrent simulated users")
    spawn_rate: float = spec(
        4.0, help="set how many users start per second until all run"
    )
    duration_s: float = spec(5.0, help="set seconds the load runs once started")
    user_rps: float = spec(
        10.0,
        help="set requests per second each user aims for (0 sends as fast as "
        "responses allow)",
    )
    max_tokens: int = spec(16, help="set max_tokens of each chat request")
    p50_ms: float = spec(250.0, help="set the highest acceptable median latency")
    p95_ms: float = spec(1000.0, help="set the highest acceptable p95 latency")
    p99_ms: float = spec(2000.0, help="set the highest acceptable p99 latency")
    max_error_rate: float = spec(
        0.01, help="set the highest acceptable share of failed requests (0 to 1)"
    )
    min_rps: float = spec(
        0.0,
        help="set the lowest acceptable requests per second (0 requires 90% of "
        "users * user_rps)",
    )
    ttft_p95_ms: float = spec(
        1000.0, help="set the highest acceptable p95 time to the first streamed token"
    )
    min_tokens_per_s: float = spec(
        10.0, help="set the lowest acceptable streamed tokens per second"
    )

    def __post_init__(self) -> None:
        prefix = "load.gateway"
        _require(self, prefix, "positive", ("users", "spawn_rate", "duration_s"))
        _require(self, prefix, "positive", ("max_tokens", "p50_ms", "p95_ms"))
        _require(self, prefix, "positive", ("p99_ms", "ttft_p95_ms"))
        _require(self, prefix, "non-negative", ("user_rps", "min_rps"))
        _require(self, prefix, "non-negative", ("min_tokens_per_s",))
        _require(self, prefix, "share", ("max_error_rate",))
        if not self.route.startswith("/") or not self.route.endswith("/"):
            raise SchemaError(
                f"{prefix}.route",
                self.route,
                "a location prefix must start and end with '/'",
                "write it as '/internal/llm/'",
            )


@dataclass(frozen=True, slots=True)
class NatsLoad:
    """The NATS load driver: core publish, request/reply and JetStream SLOs."""

    duration_s: float = spec(2.0, help="set seconds each NATS phase runs at most")
    payload_bytes: int = spec(128, help="set the size of each published message")
    min_publish_rate: float = spec(
        5000.0, help="set the lowest acceptable core publish rate (messages/s)"
    )
    request_subject: str = spec(
        "llm.request", help="set the subject of the LLM gateway's request/reply"
    )
    request_concurrency: int = spec(
        4, help="set how many requests are in flight at once"
    )
    request_p50_ms: float = spec(
        100.0, help="set the highest acceptable median request/reply latency"
    )
    request_p95_ms: float = spec(
        500.0, help="set the highest acceptable p95 request/reply latency"
    )
    request_p99_ms: float = spec(
        1000.0, help="set the highest acceptable p99 request/reply latency"
    )
    max_request_error_rate: float = spec(
        0.0, help="set the highest acceptable share of failed requests (0 to 1)"
    )
    min_request_rate: float = spec(
        20.0, help="set the lowest acceptable request/reply rate (requests/s)"
    )
    min_jetstream_ack_rate: float = spec(
        200.0,
        help="set the lowest acceptable acknowledged JetStream publish rate "
        "(messages/s)",
    )

    def __post_init__(self) -> None:
        prefix = "load.nats"
        _require(self, prefix, "positive", ("duration_s", "payload_bytes"))
        _require(self, prefix, "positive", ("request_concurrency", "request_p50_ms"))
        _require(self, prefix, "positive", ("request_p95_ms", "request_p99_ms"))
        _require(self, prefix, "non-negative", ("min_publish_rate",))
        _require(self, prefix, "non-negative", ("min_request_rate",))
        _require(self, prefix, "non-negative", ("min_jetstream_ack_rate",))
        _require(self, prefix, "share", ("max_request_error_rate",))


@dataclass(frozen=True, slots=True)
class ProxyChecks:
    """What the gateway route of nginx must pass through unchanged."""

    stream_events: int = spec(
        10, help="set how many server-sent events the streaming check expects"
    )
    stream_interval_s: float = spec(
        1.0, help="set seconds between two events of the streaming check"
    )
    first_event_s: float = spec(
        2.0, help="set seconds within which the first event must arrive"
    )
    slow_answer_s: float = spec(
        0.0,
        help="set seconds a slow answer takes that must still arrive as 200 "
        "(longer than nginx's 60 s default read timeout; 0 skips the check)",
    )
    max_body_bytes: int = spec(
        8 * 1024 * 1024,
        help="set the largest request body in bytes the gateway route must "
        "accept (nginx client_max_body_size; 0 skips the check)",
    )
    bad_input_examples: int = spec(
        200, help="set how many malformed requests the bad-input check sends"
    )
    websocket_idle_s: float = spec(
        0.0,
        help="set seconds a websocket through nginx must stay open without "
        "traffic (longer than nginx's 60 s default read timeout; 0 skips the "
        "check)",
    )

    def __post_init__(self) -> None:
        prefix = "load.proxy"
        _require(self, prefix, "positive", ("stream_events", "first_event_s"))
        _require(self, prefix, "positive", ("stream_interval_s",))
        _require(self, prefix, "non-negative", ("slow_answer_s", "max_body_bytes"))
        _require(self, prefix, "non-negative", ("bad_input_examples",))
        _require(self, prefix, "non-negative", ("websocket_idle_s",))


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Load to drive against the stack and the SLOs it must meet."""

    gateway: GatewayLoad = spec(
        factory=GatewayLoad, help="write a [load.gateway] table"
    )
    nats: NatsLoad = spec(factory=NatsLoad, help="write a [load.nats] table")
    proxy: ProxyChecks = spec(factory=ProxyChecks, help="write a [load.proxy] table")
