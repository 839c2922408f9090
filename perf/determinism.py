"""Is the same `reconstruct` bit-identical with 1 and with N CPU threads? Measure it.

    python perf/determinism.py [--case DIR] [--threads 1,2] [--repeats 2] [--set SECTION.KEY=VALUE ...]

Runs the tests' tiny configuration (consistent123/testing.py) on a preprocessed case folder (default:
a synthetic one made in code), REPEATS times per
thread count, each in a fresh process with OMP_NUM_THREADS set, and prints one line per run
side by side: seconds, mesh vertices, the SHA-256 of mesh.obj, and whether it equals the first
run with the same thread count and the first run with one thread. Extra ``--set`` values scale
the run up (e.g. ``--set train.nerf_iters=160 --set train.mesh_iters=40``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.testing import TINY_OVERRIDES, synthetic_case  # noqa: E402


def run_once(case: Path, out: Path, threads: int, overrides: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "consistent123.cli", "reconstruct", str(case), "--out", str(out), "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    obj = (out / "mesh.obj").read_bytes()
    vertices = sum(1 for line in obj.splitlines() if line.startswith(b"v "))
    return seconds, vertices, hashlib.sha256(obj).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default=None, help="preprocessed case folder (default: a synthetic one)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from consistent123.priors.standins.tiny import ensure_tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ensure_tiny_models(tmp / "models")
        case = Path(args.case) if args.case else synthetic_case(tmp / "cases")
        overrides = TINY_OVERRIDES + [
            f"models.tiny_dir={tmp / 'models'}",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            *args.overrides,
        ]
        first: dict[int, str] = {}
        print(
            f"{'threads':>7} {'run':>3} {'seconds':>8} {'vertices':>8}  {'mesh.obj sha256':<16}  "
            f"{'= first same-threads':<20}  = first 1-thread"
        )
        for threads in [int(t) for t in args.threads.split(",")]:
            for i in range(args.repeats):
                seconds, vertices, digest = run_once(case, tmp / f"t{threads}-{i}", threads, overrides)
                first.setdefault(threads, digest)
                one = first.get(1)
                print(
                    f"{threads:>7} {i:>3} {seconds:>8.1f} {vertices:>8}  {digest:<16}  {str(digest == first[threads]):<20}  "
                    f"{'-' if one is None else digest == one}"
                )


if __name__ == "__main__":
    main()
