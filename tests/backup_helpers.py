"""A PostgreSQL installation without one extension, for restore-server tests.

PostgreSQL finds its share directory (where extension control files live)
relative to the running executable. A copy of the server binaries placed in a
mirrored tree whose share directory leaves out one extension's files is
therefore a real server on which that extension is not available, without
touching the system installation other processes use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pytest_stackcheck.provision.local_postgres import find_bindir


def _pg_config(bindir: Path, option: str) -> Path:
    result = subprocess.run(
        [str(bindir / "pg_config"), option], capture_output=True, text=True, check=True
    )
    return Path(result.stdout.strip())


def install_without_extension(extension: str) -> tuple[Path, Path]:
    """Build an installation lacking ``extension``; return (root, its bindir).

    The caller removes ``root``. It is world-readable because the server may
    run as an unprivileged user.
    """
    bindir = find_bindir()
    sharedir = _pg_config(bindir, "--sharedir")
    pkglibdir = _pg_config(bindir, "--pkglibdir")

    root = Path(tempfile.mkdtemp(prefix="stackcheck-pg-no-ext-"))
    root.chmod(0o755)

    def mirrored(path: Path) -> Path:
        return root / path.relative_to("/")

    new_bindir = mirrored(bindir)
    new_bindir.mkdir(parents=True)
    # The server resolves symbolic links to find itself, so it is copied.
    for program in ("initdb", "postgres", "psql", "pg_config"):
        shutil.copy2(bindir / program, new_bindir / program)

    new_lib = mirrored(pkglibdir)
    new_lib.parent.mkdir(parents=True, exist_ok=True)
    if not new_lib.exists():
        new_lib.symlink_to(pkglibdir)

    new_share = mirrored(sharedir)
    new_share.mkdir(parents=True)
    for entry in sharedir.iterdir():
        if entry.name != "extension":
            (new_share / entry.name).symlink_to(entry)
    extensions = new_share / "extension"
    extensions.mkdir()
    for entry in (sharedir / "extension").iterdir():
        if entry.name == f"{extension}.control" or entry.name.startswith(
            f"{extension}--"
        ):
            continue
        (extensions / entry.name).symlink_to(entry)

    for directory, subdirs, _ in os.walk(root):
        for name in subdirs:
            path = Path(directory) / name
            if not path.is_symlink():
                path.chmod(0o755)
    return root, new_bindir
