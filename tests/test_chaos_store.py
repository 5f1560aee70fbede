"""JetStream store gates on a real tmpfs smaller than max_file_store.

The store directory is a 16 MiB tmpfs mounted for the test, which needs
root (CAP_SYS_ADMIN); without it the tests skip and say so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, SUITES, local_profile

STORE_SUITE = str(SUITES / "chaos" / "test_jetstream_store.py")
SHIPPED_NATS = REPO / "fixtures" / "nats" / "nats.conf.j2"
STORE_SIZE = "16m"


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted after the test."""
    mount_point = tmp_path / "store"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={STORE_SIZE}", "tmpfs", mount_point],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", mount_point], check=False)


def _profile(tmp_path: Path, store: Path, max_file_store: str) -> Path:
    template = SHIPPED_NATS.read_text(encoding="utf-8")
    template = template.replace('"{{ nats_store_dir }}"', f'"{store}"')
    template = template.replace(
        "max_file_store: 1GB", f"max_file_store: {max_file_store}"
    )
    config = tmp_path / "nats.conf.j2"
    config.write_text(template, encoding="utf-8")
    return local_profile(tmp_path, {"[nats]\n": f"[nats]\nconfig = '{config}'\n"})


def test_store_smaller_than_limit_fails(run_suite, tmp_path, small_store):
    profile = _profile(tmp_path, small_store, "1GB")

    result = run_suite(profile, STORE_SUITE, "-m", "chaos")

    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "max_file_store = 1073741824 bytes; the store fills before" in output
    assert "not with an error within 1.0 s" in output
    assert "acknowledged writes lost" not in output


def test_store_within_free_space_passes(run_suite, tmp_path, small_store):
    profile = _profile(tmp_path, small_store, "8MB")

    result = run_suite(profile, STORE_SUITE, "-m", "chaos")

    result.assert_outcomes(passed=2)
