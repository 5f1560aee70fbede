"""Archive verification, retention judgement and aged copies, on plain files."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from pytest_stackcheck.backup import archives

TRAILER = archives.DATABASE_TRAILER
DAY = archives.SECONDS_PER_DAY


def _dump(path, body: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(body)


def _complete(path) -> None:
    _dump(path, f"CREATE TABLE t (x int);\n\n--\n{TRAILER}\n--\n\n\\unrestrict k\n\n")


def test_verify_accepts_complete_dump(tmp_path):
    path = tmp_path / "db-20260101T000000Z.sql.gz"
    _complete(path)

    assert archives.verify(path, TRAILER) == ""


def test_verify_rejects_zero_bytes(tmp_path):
    path = tmp_path / "db.sql.gz"
    path.write_bytes(b"")

    assert "empty (0 bytes)" in archives.verify(path, TRAILER)


def test_verify_rejects_gzip_of_nothing(tmp_path):
    path = tmp_path / "db.sql.gz"
    _dump(path, "")

    assert path.stat().st_size > 0
    assert "decompresses to nothing" in archives.verify(path, TRAILER)


def test_verify_rejects_missing_trailer(tmp_path):
    path = tmp_path / "db.sql.gz"
    _dump(path, "CREATE TABLE t (x int);\nCOPY t (x) FROM stdin;\n1\n")

    problem = archives.verify(path, TRAILER)

    assert "stopped part way" in problem
    assert "'1'" in problem


def test_verify_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "db.sql.gz"
    _complete(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    assert "gzip -t failed" in archives.verify(path, TRAILER)


def test_find_archives_skips_hidden_partials(tmp_path):
    _complete(tmp_path / "db-20260101T000000Z.sql.gz")
    _complete(tmp_path / ".db-20260102T000000Z.sql.gz.partial.42")

    found = archives.find_archives(tmp_path, "db-*.sql.gz", TRAILER)

    assert [archive.name for archive in found] == ["db-20260101T000000Z.sql.gz"]
    assert archives.leftover_files(tmp_path) == [
        ".db-20260102T000000Z.sql.gz.partial.42"
    ]


def _archive(name: str, age_days: float, now: float, problem: str = ""):
    return archives.Archive(Path(name), 100, now - age_days * DAY, problem)


def test_retention_flags_expired_archives():
    now = time.time()
    ages = (0.5, 3.0, 7.5, 7.9, 8.1, 9.0)
    found = [_archive(f"a{age}", age, now) for age in ages]

    finding = archives.judge_retention(found, 7, now)

    # Up to one day past the window is the grace that find -mtime +7 needs.
    assert finding.expired == ("a8.1", "a9.0")
    assert finding.kept_good == 6


def test_retention_keeps_newest_good_whatever_age():
    now = time.time()
    found = [
        _archive("broken", 1.0, now, "gzip -t failed"),
        _archive("good-old", 30.0, now),
        _archive("good-older", 40.0, now),
    ]

    finding = archives.judge_retention(found, 7, now)

    assert finding.expired == ("good-older",)
    assert finding.kept_good == 2
    assert finding.kept_bad == 1
    assert finding.oldest_good_days == pytest.approx(40.0)


def test_aged_copy_renames_and_dates(tmp_path):
    source = tmp_path / "genesis-20260101T000000Z.sql.gz"
    _complete(source)
    target = tmp_path / "aged"
    target.mkdir()
    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    copy = archives.aged_copy(source, target, 2.5, now)

    assert copy.name == "genesis-20251229T120000Z.sql.gz"
    assert os.stat(copy).st_mtime == pytest.approx(now - 2.5 * DAY)


def test_aged_copy_needs_time_stamp(tmp_path):
    source = tmp_path / "genesis-latest.sql.gz"
    _complete(source)

    with pytest.raises(ValueError, match="contains no YYYYMMDDTHHMMSSZ"):
        archives.aged_copy(source, tmp_path, 1.0, time.time())
