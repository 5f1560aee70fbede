"""Paths and profile builders shared by the plugin's own tests."""

from __future__ import annotations

import re
from pathlib import Path

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
