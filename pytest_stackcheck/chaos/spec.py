"""The ``[chaos]`` table of a stack profile: budgets and fault settings."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_stackcheck.schema import SchemaError, spec


@dataclass(frozen=True, slots=True)
class ChaosSpec:
    """Recovery budgets, write load and durability limits for chaos gates."""

    recovery_s: float = spec(
        15.0,
        help="set the seconds a service may take from a fault to healthy again",
    )
    service_recovery_s: dict[str, float] = spec(
        factory=dict,
        help="map service names to their own recovery budget in seconds, for "
        "example { postgresql = 20.0 }",
    )
    exit_zero_signal: str = spec(
        "SIGUSR2",
        help="name the signal that makes an app service exit with status 0, "
        "for example 'SIGUSR2' (the reference services exit 0 on it)",
    )
    load_s: float = spec(
        1.5,
        help="set the seconds of write load before and after a fault in the "
        "durability ledger",
    )
    accepted_loss_window_s: float = spec(
        0.0,
        help="set the seconds of acknowledged JetStream writes the operator "
        "accepts to lose on power loss (0 requires sync_interval: always)",
    )
    ledger_stream: str = spec(
        "STACKCHECK_LEDGER",
        help="name the JetStream stream the durability ledger writes to",
    )
    ledger_database: str = spec(
        "",
        help="name the database the ledger writes rows to (default: the first "
        "of postgres.databases)",
    )
    max_fill_bytes: int = spec(
        64 * 1024 * 1024,
        help="set the most bytes the store fill check may write; a store with "
        "more room than this is not filled",
    )
    network_proxy: bool = spec(
        False,
        help="set network_proxy = true to route the local stack's service "
        "traffic to PostgreSQL and NATS through the chaos fault proxy",
    )
    network_latency_ms: int = spec(
        200,
        help="set the milliseconds of latency each direction of a link gets "
        "in the latency fault; services must stay healthy with it",
    )
    network_loss_percent: int = spec(
        10,
        help="set the percent of chunks each direction of a link loses in "
        "the loss fault (1 to 50); services must stay healthy with it",
    )
    max_faults: int = spec(
        6, help="set how many faults one --chaos-seed schedule injects at most"
    )

    def __post_init__(self) -> None:
        """Check the network fault settings, raising SchemaError."""
        if not 0 <= self.network_latency_ms <= 60_000:
            raise SchemaError(
                "chaos.network_latency_ms",
                self.network_latency_ms,
                "the latency is outside what the fault proxy accepts",
                "use 0 to 60000",
            )
        if not 1 <= self.network_loss_percent <= 50:
            raise SchemaError(
                "chaos.network_loss_percent",
                self.network_loss_percent,
                "the loss is outside what the fault proxy accepts",
                "use 1 to 50",
            )

    def budget_s(self, service: str) -> float:
        """Return the recovery budget of ``service`` in seconds."""
        return self.service_recovery_s.get(service, self.recovery_s)
