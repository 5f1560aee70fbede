"""Paths and profile builders shared by the plugin's own tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_stackcheck.provision.base import LiveStack

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "suites"
STACKS = REPO / "fixtures" / "stacks"
NGINX_CASES = REPO / "fixtures" / "nginx" / "cases"


def local_profile(tmp_path: Path, replacements: dict[str, str] | None = None) -> Path:
    """Write a copy of the shipped local profile with text replaced.

    Each key must occur in the shipped profile, so a test cannot silently
    edit nothing. Checks wait 2 s at most, so broken stacks fail quickly.
    """
    text = (STACKS / "local.toml").read_text(encoding="utf-8")
    text = re.sub(r"check_s = [0-9.]+", "check_s = 2.0", text)
    for old, new in (replacements or {}).items():
        assert old in text, f"{old!r} is not in the shipped local profile"
        text = text.replace(old, new)
    path = tmp_path / "stack.toml"
    path.write_text(text, encoding="utf-8")
    return path


def with_nginx_site(tmp_path: Path, site: Path) -> Path:
    """Write a local profile whose nginx site is ``site``."""
    return local_profile(tmp_path, {"[nginx]\n": f"[nginx]\nsite = '{site}'\n"})


def existing_profile(stack: LiveStack, path: Path) -> Path:
    """Write the shipped local profile as an ``existing`` one with real ports."""
    text = (STACKS / "local.toml").read_text(encoding="utf-8")
    text = text.replace('provisioner = "local"', 'provisioner = "existing"')
    text = re.sub(r"check_s = [0-9.]+", "check_s = 3.0", text)

    section = ""
    lines = []
    for line in text.splitlines():
        header = re.match(r"\[+([^\]]+)\]+", line)
        if header:
            section = header.group(1)
        key = re.match(r"(\w+) = 0$", line)
        if key:
            line = f"{key.group(1)} = {stack.ports[f'{section}.{key.group(1)}']}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
