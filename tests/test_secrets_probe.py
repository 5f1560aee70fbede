"""The secret scan's search: which variables it reads and how it masks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pytest_stackcheck.probes.secrets import (
    Secret,
    find_leaks,
    secret_env_names,
)
from pytest_stackcheck.profile import SHIPPED_STACKS, load_profile

SECRET = Secret("APP_PASSWORD", "s3cret/with+chars")


def test_env_names_from_every_section(tmp_path: Path):
    text = (SHIPPED_STACKS / "local.toml").read_text()
    text += '\n[backup]\npassword_env = "BACKUP_PASSWORD"\n'
    path = tmp_path / "stack.toml"
    path.write_text(text)

    names = secret_env_names(load_profile(path).doc)

    assert names == [
        "BACKUP_PASSWORD",
        "STACKCHECK_LLM_TOKEN",
        "STACKCHECK_PG_PASSWORD",
    ]


def test_verbatim_secret_masked():
    leaks = find_leaks("log app.log", "connecting with s3cret/with+chars now", [SECRET])

    assert len(leaks) == 1
    assert leaks[0].form == "verbatim"
    assert "s3cret" not in leaks[0].describe()
    assert "with ***" in leaks[0].excerpt


def test_percent_encoded_secret_found():
    text = "postgresql://app:s3cret%2Fwith%2Bchars@db/app"

    leaks = find_leaks("health", text, [SECRET])

    assert [leak.form for leak in leaks] == ["percent-encoded"]
    assert "%2F" not in leaks[0].excerpt


@pytest.mark.parametrize("user", ["u", "us", "app"])
def test_basic_auth_secret_found(user):
    credentials = f"{user}:{SECRET.value}".encode()
    header = "Authorization: Basic " + base64.b64encode(credentials).decode()

    leaks = find_leaks("headers", header, [SECRET])

    assert len(leaks) == 1
    assert leaks[0].form.startswith("base64")


def test_clean_text_has_no_leak():
    assert find_leaks("log", "password=*** and nothing else", [SECRET]) == []


def test_secret_value_not_in_repr():
    assert "s3cret" not in repr(SECRET)
