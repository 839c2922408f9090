"""Write constraints.txt: the exact version of every package ``consistent123[test]`` pulls in, as
installed in the environment the tests passed in (``pip freeze``, filtered to the project's
dependency closure read from the installed metadata, so tools that happen to be installed beside
it are left out).

    python .ci/freeze_constraints.py > constraints.txt

``.ci/run`` and environment.yml install with ``-c constraints.txt``;
tests/unit/test_constraints.py checks it still satisfies pyproject.toml's requirements.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(roots: list[Requirement]) -> set[str]:
    """Canonical names of ``roots`` and everything they require, recursively (installed metadata)."""
    seen: set[str] = set()
    todo = [(req.name, frozenset(req.extras)) for req in roots]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # a requirement whose marker excludes this platform
            continue
        key = canonicalize_name(dist.metadata["Name"])
        if key in seen and not wanted:
            continue
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def project_requirements(extra: str = "test") -> list[Requirement]:
    """pyproject.toml's requirements (the checkout's, not an older install's metadata)."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]]


def main() -> int:
    keep = closure(project_requirements())
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    lines = [line for line in frozen if "==" in line and canonicalize_name(line.split("==")[0]) in keep]
    print("# Exact versions the tests passed with (python .ci/freeze_constraints.py; Python 3.11, Linux x86-64).")
    print("# Used as pip constraints (-c) by .ci/run and environment.yml; checked against pyproject.toml by")
    print("# tests/unit/test_constraints.py.")
    print("\n".join(sorted(lines, key=str.lower)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
