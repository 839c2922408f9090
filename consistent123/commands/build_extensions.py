"""``consistent123 build-extensions --arch 90 --out DIR --source nvdiffrast=DIR --source tinycudann=DIR``:
nvdiffrast and tiny-cuda-nn wheels for named GPU architectures on a machine without a GPU
(``consistent123.build_extensions``)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from consistent123.build_extensions import (
    BuildError,
    build,
    find_cuda_home,
    nvcc_release,
    parse_sources,
    pkg_resources_missing,
    plan,
    site_cuda_homes,
    torch_cuda_version,
    verify,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", type=int, action="append", default=[], help="compute capability, e.g. 90; repeatable")
    parser.add_argument("--out", required=True, help="folder for the wheels")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a source tree: nvdiffrast=DIR and/or tinycudann=DIR (tested versions in the module docstring)",
    )
    parser.add_argument("--cuda-home", default=None, help="CUDA toolkit folder (default: pip's nvidia/cuXX with nvcc)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (MAX_JOBS; default: all cores)")
    parser.add_argument("--plan", action="store_true", help="print the steps and environment, build nothing")
    parser.add_argument("--no-verify", action="store_true", help="do not load the built modules afterwards")


def run(args: argparse.Namespace, cfg=None) -> int:
    import torch

    torch_cuda = torch_cuda_version()
    cuda_home = find_cuda_home(args.cuda_home)
    sources = parse_sources(args.source)
    if not sources:
        raise BuildError("name a source tree with --source nvdiffrast=DIR and/or --source tinycudann=DIR")
    scratch = Path(tempfile.mkdtemp(prefix="consistent123-build-"))
    include_dirs = [d / "include" for d in site_cuda_homes() if d != cuda_home]
    p = plan(
        args.arch,
        Path(args.out).resolve(),
        sources,
        scratch,
        cuda_home,
        nvcc_release(cuda_home),
        torch_cuda,
        pkg_resources_missing(),
        include_dirs,
        args.jobs,
    )
    print(f"torch {torch.__version__} (CUDA {torch_cuda}), nvcc {p.nvcc_version} in {cuda_home}, archs {p.archs}")
    for step in p.steps:
        print(step.describe())
    if p.problems:
        raise BuildError("; ".join(p.problems))
    if args.plan:
        shutil.rmtree(scratch, ignore_errors=True)
        return 0
    p.out.mkdir(parents=True, exist_ok=True)
    results = build(p, p.out)
    for r in results:
        print(f"{r['name']}: {r['wheel'].name} {r['mib']:.1f} MiB in {r['seconds']:.0f} s")
    if not args.no_verify:
        for module in verify(p, [r["wheel"] for r in results]):
            print(f"loads: {module}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0
