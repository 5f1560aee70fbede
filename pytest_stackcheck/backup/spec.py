"""The ``[backup]`` table of a stack profile: the job, its archives and limits."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_stackcheck.schema import SchemaError, spec


@dataclass(frozen=True, slots=True)
class BackupSpec:
    """Where the backup job and its archives live, and the policy they follow."""

    script: str = spec(
        "",
        help="name the backup script (relative to the profile) to run instead "
        "of the shipped fixtures/backup/pg-backup.sh, or leave empty",
    )
    archive_dir: str = spec(
        "",
        help="set the directory the job writes archives to; empty means a "
        "'backups' directory inside a local stack (required for other stacks)",
    )
    archive_glob: str = spec(
        "{database}-????????T??????Z.sql.gz",
        help="set the file name pattern of one database's archives, with "
        "{database} for its name, for example '{database}-*.sql.gz'",
    )
    globals_glob: str = spec(
        "globals-????????T??????Z.sql.gz",
        help="set the file name pattern of the globals-only (roles) archives",
    )
    retention_days: int = spec(
        7, help="set how many days of archives the job keeps, at least 1"
    )
    max_age_hours: float = spec(
        26.0,
        help="set the maximum age in hours of each database's newest archive",
    )
    user: str = spec(
        "postgres",
        help="set the role the job connects as (pg_dumpall --globals-only "
        "needs a superuser)",
    )
    password_env: str = spec(
        "", help="name the environment variable that holds the job's password"
    )
    required_extensions: tuple[str, ...] = spec(
        (),
        help="list extensions a restore must bring back; empty means "
        "postgres.extensions",
    )
    scratch_bindir: str = spec(
        "",
        help="set the directory of the PostgreSQL binaries (initdb, postgres, "
        "psql) for the scratch restore server; empty means the ones found here",
    )
    job_timeout_s: float = spec(
        600.0, help="set the seconds one run of the backup job may take"
    )
    restore_timeout_s: float = spec(
        600.0, help="set the seconds the restore of one archive may take"
    )

    def __post_init__(self) -> None:
        """Check the values against each other, raising SchemaError."""
        if self.retention_days < 1:
            raise SchemaError(
                "backup.retention_days",
                self.retention_days,
                "retention must keep at least one day",
                "set retention_days to 1 or more",
            )
        if self.max_age_hours <= 0:
            raise SchemaError(
                "backup.max_age_hours",
                self.max_age_hours,
                "the maximum age must be positive",
                "set max_age_hours to the hours between two runs plus a margin",
            )
        if "{database}" not in self.archive_glob:
            raise SchemaError(
                "backup.archive_glob",
                self.archive_glob,
                "the pattern does not contain {database}",
                "write it as '{database}-*.sql.gz'",
            )
