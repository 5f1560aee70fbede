"""Pre-production acceptance: the stack is configured the way it must run.

These checks read configuration and schema state: migrations, restart
policy, database ownership and extensions. Route wiring lives in
``test_routes.py`` and NATS configuration in ``test_nats_config.py``; both
count for this gate too.
"""

from __future__ import annotations

import pytest

from pytest_stackcheck.probes import host
from pytest_stackcheck.probes.wait import require, wait_until

# App services must come back from every death, a clean exit included: only
# systemd's Restart=always (supervisord's autorestart=true) does that.
RESTART_REQUIRED = "always"


def _query(stack, database: str, sql: str, params: tuple[object, ...] = ()):
    import psycopg

    with psycopg.connect(**stack.conninfo(database)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.mark.gate("preprod", item="migrations applied")
def test_migrations_applied(stack, evidence, database_name):
    postgres = stack.profile.doc.postgres
    timeouts = stack.profile.doc.timeouts
    table = postgres.migrations_table
    expected = postgres.expected_migration

    def read() -> tuple[int, object, bool]:
        present = _query(
            stack, database_name, "SELECT to_regclass(%s) IS NOT NULL", (table,)
        )
        if not present[0][0]:
            return 0, None, False
        rows = _query(
            stack,
            database_name,
            "SELECT count(*), max(version), bool_or(version::text = %s) "
            f'FROM "{table}"',
            (expected,),
        )
        return int(rows[0][0]), rows[0][1], bool(rows[0][2])

    def applied(reading: tuple[int, object, bool]) -> bool:
        count, _, has_expected = reading
        return count > 0 and (has_expected or not expected)

    waited = wait_until(read, applied, timeouts.check_s, timeouts.poll_s)
    wanted = f", including {expected}" if expected else ""
    count, latest, _ = require(
        waited,
        f"database {database_name} has applied migrations in table {table}{wanted}",
        lambda r: (
            f"{r[0]} rows, newest {r[1]} (postgres.expected_migration = "
            f"{expected!r}; run the release's migrations)"
        ),
    )
    evidence.record(f"{database_name}.migrations", count)
    evidence.record(f"{database_name}.latest_migration", str(latest))


@pytest.mark.gate("preprod", item="database owner and extensions")
def test_database_owner_and_extensions(stack, evidence, database_name):
    postgres = stack.profile.doc.postgres
    rows = _query(
        stack,
        database_name,
        "SELECT r.rolname, r.rolsuper FROM pg_database d "
        "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = current_database()",
    )
    owner, is_superuser = rows[0]
    evidence.record(f"{database_name}.owner", owner)
    assert owner == postgres.owner, (
        f"database {database_name} is owned by {owner!r}, expected postgres.owner = "
        f"{postgres.owner!r}"
    )
    assert not is_superuser, (
        f"database {database_name} is owned by superuser {owner!r}; an application "
        "owner should not be a superuser"
    )

    installed = dict(
        _query(stack, database_name, "SELECT extname, extversion FROM pg_extension")
    )
    for extension in postgres.extensions:
        evidence.record(
            f"{database_name}.extension.{extension}",
            installed.get(extension, "missing"),
        )
    missing = [e for e in postgres.extensions if e not in installed]
    assert not missing, f"database {database_name} lacks extensions {missing}"


@pytest.mark.gate("preprod", item="restart policy configured")
def test_restart_policy(stack, evidence, service_name):
    try:
        host.manager_of(stack)
    except host.NoServiceManager as exc:
        pytest.skip(str(exc))

    declared = stack.profile.doc.services[service_name].restart
    actual = host.restart_policy(stack, service_name)
    evidence.record(f"{service_name}.restart", actual)
    evidence.record(f"{service_name}.restart_declared", declared)
    assert actual == RESTART_REQUIRED, (
        f"service {service_name}: restart policy {actual!r}, expected "
        f"{RESTART_REQUIRED!r} (the profile declares restart = {declared!r}): "
        + _left_down(actual)
        + f"; set Restart=always in the unit and restart = 'always' for "
        f"services.{service_name} in the profile"
    )
    assert actual == declared, (
        f"service {service_name}: restart policy {actual!r}, but the profile declares "
        f"restart = {declared!r}"
    )

    prevented = host.restart_prevented(stack, service_name)
    evidence.record(f"{service_name}.restart_prevented", prevented or "none")
    assert not prevented, (
        f"service {service_name}: RestartPreventExitStatus={prevented}, expected "
        "none: systemd restarts the unit after none of these exit statuses or "
        "signals, whatever the Restart= setting, so it stays down after them; "
        "remove RestartPreventExitStatus= from the unit"
    )


def _left_down(policy: str) -> str:
    if policy == "on-failure":
        return (
            "a service that exits with status 0 or dies of an unhandled SIGTERM "
            "counts as cleanly stopped and stays down"
        )
    if policy == "no":
        return "a service that dies for any reason stays down"
    return "the manager does not restart the service after every kind of death"
