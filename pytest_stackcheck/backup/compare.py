"""Judge a restored database against the live one it was dumped from.

The live database may keep taking writes while the job runs, so it is read
twice: ``before`` the job starts and ``live`` after the restore. Tables with
an integer primary key are compared up to the restore's largest key, because
``live`` is taken with those bounds. Such a table must also contain every row
that existed ``before``. Other tables, extensions, owners and privileges
must match exactly. A sequence must stand between its two live readings and
not behind its own column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_stackcheck.backup.fingerprint import Fingerprint


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the restore differs from the live database."""

    kind: str
    name: str
    detail: str

    def render(self) -> str:
        """Return the difference as one line for a failure message."""
        return f"{self.kind} {self.name}: {self.detail}"


def restore_bounds(restored: Fingerprint) -> dict[str, int | None]:
    """Return the key bound of each table, for reading the live side."""
    return {
        name: (table.max_key if table.max_key is not None else 0)
        for name, table in restored.tables.items()
        if table.key_column
    }


def compare(
    before: Fingerprint,
    restored: Fingerprint,
    live: Fingerprint,
    required_extensions: Iterable[str] = (),
) -> list[Difference]:
    """Return every difference between ``restored`` and the live readings."""
    differences = _extensions(restored, live, required_extensions)
    differences += _owners(restored, live)
    differences += _privileges(restored, live)
    differences += _tables(before, restored, live)
    differences += _sequences(before, restored, live)
    return differences


def _extensions(
    restored: Fingerprint, live: Fingerprint, required: Iterable[str]
) -> list[Difference]:
    found: list[Difference] = []
    for name in required:
        if name not in live.extensions:
            found.append(
                Difference(
                    "extension",
                    name,
                    f"required but not installed in live database {live.database}",
                )
            )
    for name, version in sorted(live.extensions.items()):
        restored_version = restored.extensions.get(name)
        if restored_version is None:
            found.append(
                Difference(
                    "extension",
                    name,
                    f"version {version} is installed live but missing from the restore",
                )
            )
        elif restored_version != version:
            found.append(
                Difference(
                    "extension",
                    name,
                    f"live version {version}, restored version {restored_version}; "
                    "the restore server ships another default version",
                )
            )
    for name in sorted(set(restored.extensions) - set(live.extensions)):
        found.append(Difference("extension", name, "in the restore but not live"))
    return found


def _owners(restored: Fingerprint, live: Fingerprint) -> list[Difference]:
    found: list[Difference] = []
    for name, owner in sorted(live.owners.items()):
        restored_owner = restored.owners.get(name)
        if restored_owner is None:
            found.append(Difference("object", name, "missing from the restore"))
        elif restored_owner != owner:
            found.append(
                Difference(
                    "owner",
                    name,
                    f"live owner {owner}, restored owner {restored_owner}",
                )
            )
    for name in sorted(set(restored.owners) - set(live.owners)):
        found.append(Difference("object", name, "in the restore but not live"))
    return found


def _privileges(restored: Fingerprint, live: Fingerprint) -> list[Difference]:
    # Objects missing on one side are already reported by _owners.
    found: list[Difference] = []
    for name, acl in sorted(live.privileges.items()):
        restored_acl = restored.privileges.get(name)
        if restored_acl is None and name.startswith("default privileges"):
            found.append(
                Difference(
                    "privileges",
                    name,
                    f"live grants {acl}, missing from the restore; the dump "
                    "leaves out ALTER DEFAULT PRIVILEGES (pg_dump --no-acl or -x)",
                )
            )
        elif restored_acl is not None and restored_acl != acl:
            found.append(
                Difference(
                    "privileges",
                    name,
                    f"live grants {acl or 'nothing'}, restored grants "
                    f"{restored_acl or 'nothing'}; a dump made with --no-acl "
                    "(-x) leaves out GRANT and REVOKE",
                )
            )
    for name in sorted(set(restored.privileges) - set(live.privileges)):
        if name.startswith("default privileges"):
            found.append(Difference("privileges", name, "in the restore but not live"))
    return found


def _tables(
    before: Fingerprint, restored: Fingerprint, live: Fingerprint
) -> list[Difference]:
    found: list[Difference] = []
    for name, live_table in sorted(live.tables.items()):
        table = restored.tables.get(name)
        if table is None:
            found.append(Difference("table", name, "missing from the restore"))
            continue

        scope = ""
        if live_table.bound is not None:
            scope = f" (rows with {live_table.key_column} <= {live_table.bound})"
        if table.rows != live_table.rows:
            found.append(
                Difference(
                    "table",
                    name,
                    f"restored {table.rows} rows, live has {live_table.rows}{scope}",
                )
            )
        elif table.checksum != live_table.checksum:
            found.append(
                Difference(
                    "table",
                    name,
                    f"same row count ({table.rows}) but the content checksum "
                    f"differs{scope}",
                )
            )

        earlier = before.tables.get(name)
        if earlier is None or earlier.max_key is None:
            continue
        if table.max_key is None:
            # The live side was read up to key 0, so its row count matched.
            found.append(
                Difference(
                    "table",
                    name,
                    f"the restore has no rows, but {earlier.rows} row(s) up to "
                    f"{table.key_column} = {earlier.max_key} existed before the "
                    "backup started; the archive holds none of this table's data "
                    "(a dump made with --schema-only or --exclude-table-data, or "
                    "filtered after pg_dump)",
                )
            )
        elif table.max_key < earlier.max_key:
            found.append(
                Difference(
                    "table",
                    name,
                    f"the restore ends at {table.key_column} = {table.max_key}, "
                    f"but {earlier.max_key} existed before the backup started",
                )
            )
    for name in sorted(set(restored.tables) - set(live.tables)):
        found.append(Difference("table", name, "in the restore but not live"))
    return found


def _sequences(
    before: Fingerprint, restored: Fingerprint, live: Fingerprint
) -> list[Difference]:
    found: list[Difference] = []
    for name, live_sequence in sorted(live.sequences.items()):
        sequence = restored.sequences.get(name)
        if sequence is None:
            found.append(Difference("sequence", name, "missing from the restore"))
            continue

        earlier = before.sequences.get(name)
        low = earlier.position if earlier is not None else sequence.position
        if not low <= sequence.position <= live_sequence.position:
            found.append(
                Difference(
                    "sequence",
                    name,
                    f"restored at {sequence.position}, outside the live readings "
                    f"{low} (before the backup) to {live_sequence.position} (now)",
                )
            )
        if sequence.owned_max is not None and sequence.position < sequence.owned_max:
            found.append(
                Difference(
                    "sequence",
                    name,
                    f"restored at {sequence.position}, behind the largest "
                    f"{sequence.owned_by} = {sequence.owned_max}; the next insert "
                    "would collide",
                )
            )
    return found
