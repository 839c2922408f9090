"""constraints.txt (the exact versions CI tested, .ci/freeze_constraints.py) agrees with
pyproject.toml: every requirement of ``consistent123[test]`` is pinned there, to a version its
specifier accepts, and the installs that should use it do."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
        found[canonicalize_name(name)] = version
    return found


def test_every_requirement_is_pinned_to_a_version_pyproject_accepts():
    import tomllib  # Python >= 3.11, as the tests run

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pinned = pins()
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is required by pyproject.toml but not in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{req} but constraints.txt pins {pinned[name]}"
    assert "consistent123" not in pinned  # the project itself is installed from the checkout


def test_ci_and_conda_install_with_the_constraints():
    assert '-e ".[test]" -c constraints.txt' in (REPO / ".ci" / "run").read_text()
    assert "- -c constraints.txt" in (REPO / "environment.yml").read_text()
