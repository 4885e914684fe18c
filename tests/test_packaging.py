"""The install paths a new user takes: the extras in pyproject.toml and the lock the test command uses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _extra_requirements(extras: dict, extra: str) -> set[str]:
    names = set()
    for requirement in extras[extra]:
        nested = re.fullmatch(r"bertkit\[([\w,-]+)\]", requirement)
        if nested:
            for inner in nested.group(1).split(","):
                names |= _extra_requirements(extras, inner)
        else:
            names.add(_name(requirement))
    return names


def test_every_test_and_bench_requirement_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_name(r) for r in project["dependencies"]} - {"torch"}  # torch: the CPU build, installed first
    for extra in ("test", "bench"):
        wanted |= _extra_requirements(project["optional-dependencies"], extra)
    locked = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            locked[_name(name)] = version
    missing = sorted(wanted - set(locked))
    assert not missing, f"constraints.txt does not lock {missing}: run tools/update_constraints.sh"


def test_the_readme_test_command_installs_with_the_lock():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("<!-- test-command -->", 1)[1].split("<!-- /test-command -->", 1)[0]
    assert "-c constraints.txt" in command
