"""Compare two result trees of the same workflow run (local vs SLURM): same files, same
checksums for the inputs, same metrics and boundary decisions."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

IGNORED_PARTS = {"logs", "benchmarks", "slurm-logs", "checkpoints", "models", "report"}


def relative_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not IGNORED_PARTS & set(p.relative_to(root).parts) and not p.name.startswith(".")
    }


# Run ids, wall-clock timings and absolute paths differ between two runs by design.
VARIES_BY_DESIGN = ("_id", "time", "time_s", "seconds", "path", "uri", "out")

ROOTS: list[str] = []  # the two trees' roots; paths inside them compare equal after stripping


def _strip_root(value):
    if isinstance(value, str):
        for root in ROOTS:
            value = value.replace(root, "<root>")
    return value


def close(a, b, path: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                problems.append(f"{path}.{key}: only in one run")
            else:
                close(a[key], b[key], f"{path}.{key}", problems)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{path}: lengths {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]", problems)
    elif path.endswith(VARIES_BY_DESIGN):
        return
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6):
            problems.append(f"{path}: {a} != {b}")
    elif _strip_root(a) != _strip_root(b):
        problems.append(f"{path}: {a!r} != {b!r}")


def main(local: str, slurm: str) -> int:
    a_root, b_root = Path(local), Path(slurm)
    ROOTS[:] = [str(a_root), str(b_root), str(a_root.resolve()), str(b_root.resolve())]
    a_files, b_files = relative_files(a_root), relative_files(b_root)
    problems = [f"only in {local}: {f}" for f in sorted(a_files - b_files)]
    problems += [f"only in {slurm}: {f}" for f in sorted(b_files - a_files)]
    compared = 0
    for rel in sorted(a_files & b_files):
        a_path, b_path = a_root / rel, b_root / rel
        if rel.startswith("data/"):
            if a_path.read_bytes() != b_path.read_bytes():
                problems.append(f"{rel}: inputs differ")
        elif a_path.name in ("metrics.json", "boundary.json"):
            close(json.loads(a_path.read_text()), json.loads(b_path.read_text()), rel, problems)
        else:
            continue
        compared += 1
    for p in problems:
        print("MISMATCH", p)
    print(f"compared {compared} files ({len(a_files)} in each tree): {'OK' if not problems else 'DIFFERENT'}")
    return 1 if problems or compared == 0 else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
