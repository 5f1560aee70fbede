"""Security: PostgreSQL rejects a wrong password over TCP.

A ``trust`` line in pg_hba.conf lets any process that reaches the port log in
as any role, the superuser included, and nothing in the application's own
behaviour shows it. The check logs in over TCP as the check user, the owner
role and ``postgres`` with a password that is certainly wrong.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

# invalid_password, and invalid_authorization_specification (no pg_hba line
# matches, or the role does not exist): both mean the login was refused.
REFUSED = ("28P01", "28000")


@pytest.mark.gate("security", item="database rejects a wrong password")
def test_wrong_password_rejected(stack, evidence):
    postgres = stack.profile.doc.postgres
    database = postgres.databases[0]
    wrong = f"stackcheck-wrong-{uuid.uuid4().hex}"
    roles = list(dict.fromkeys([postgres.user, postgres.owner, "postgres"]))

    admitted: list[str] = []
    for role in roles:
        try:
            connection = psycopg.connect(
                host=postgres.host,
                port=postgres.port,
                dbname=database,
                user=role,
                password=wrong,
                connect_timeout=5,
            )
        except psycopg.OperationalError as exc:
            state = getattr(exc, "sqlstate", None) or ""
            evidence.record(f"{role}.wrong_password", state or "refused")
            if state and state not in REFUSED:
                pytest.fail(f"logging in as {role} failed with SQLSTATE {state}: {exc}")
            if not state and "authentication failed" not in str(exc):
                pytest.fail(
                    f"logging in as {role} at {postgres.host}:{postgres.port} "
                    f"failed before authentication: {exc}"
                )
            continue
        connection.close()
        evidence.record(f"{role}.wrong_password", "admitted")
        admitted.append(role)

    assert not admitted, (
        f"PostgreSQL at {postgres.host}:{postgres.port} let {', '.join(admitted)} "
        f"log in to {database} with a wrong password: pg_hba.conf trusts TCP "
        "connections; use scram-sha-256 on every host line"
    )
