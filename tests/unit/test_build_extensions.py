"""``consistent123 build-extensions`` planned without compiling: the pins it checks, the
environment and flags each build gets, and what it refuses. (The compile itself is a benchmark
on a build machine, docs/gpu.md, never part of the test suite.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from consistent123 import build_extensions as be
from consistent123.cli import main as cli_main


def _trees(tmp_path: Path, fmt: bool = True) -> dict[str, Path]:
    nvdr = tmp_path / "nvdiffrast"
    nvdr.mkdir(parents=True)
    (nvdr / "setup.py").write_text("")
    tcnn = tmp_path / "tiny-cuda-nn"
    (tcnn / "bindings/torch").mkdir(parents=True)
    (tcnn / "bindings/torch/setup.py").write_text("")
    if fmt:
        (tcnn / "dependencies/fmt/src").mkdir(parents=True)
        (tcnn / "dependencies/fmt/src/format.cc").write_text("")
    return {"nvdiffrast": nvdr, "tinycudann": tcnn}


def _plan(tmp_path, **kw):
    args = dict(
        archs=[90, 80],
        out=tmp_path / "wheels",
        sources=_trees(tmp_path),
        scratch=tmp_path / "scratch",
        cuda_home=tmp_path / "cuda",
        nvcc_version="13.0.88",
        torch_cuda="13.0",
        needs_pkg_resources_shim=True,
        include_dirs=[tmp_path / "torch-cuda/include"],
        jobs=3,
    )
    args.update(kw)
    return be.plan(**args)


def test_plan_environment_and_flags(tmp_path):
    p = _plan(tmp_path)
    assert p.problems == []
    steps = {s.name: s for s in p.steps}
    nvdr, tcnn = steps["nvdiffrast"], steps["tinycudann"]
    for step in (nvdr, tcnn):
        assert step.command[1:6] == ["-m", "pip", "wheel", "--no-build-isolation", "--no-deps"]
        assert step.env["CUDA_HOME"] == str(tmp_path / "cuda")
        assert step.env["PATH"].startswith(str(tmp_path / "cuda/bin") + os.pathsep)
        assert step.env["CPATH"].split(os.pathsep) == [
            str(tmp_path / "cuda/include"),
            str(tmp_path / "torch-cuda/include"),
        ]
        # the stub driver and unversioned links come first on the link path
        assert step.env["LIBRARY_PATH"].split(os.pathsep)[0] == str(tmp_path / "scratch/lib")
        assert step.env["MAX_JOBS"] == "3"
    assert nvdr.env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    assert nvdr.cwd == tmp_path / "nvdiffrast"
    assert tcnn.cwd == tmp_path / "tiny-cuda-nn/bindings/torch"
    assert tcnn.env["TCNN_CUDA_ARCHITECTURES"] == "80;90"
    assert tcnn.env["CXX"] == str(tmp_path / "scratch/bin/c++20")  # host files at C++20
    assert tcnn.env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "scratch/py")  # pkg_resources
    assert "--config-settings=--build-option=--no-networks" in tcnn.command
    assert "--use-pep517" in tcnn.command
    assert "CXX" not in nvdr.env and "PYTHONPATH" not in nvdr.env


def test_no_shim_with_a_setuptools_that_has_pkg_resources(tmp_path):
    tcnn = next(s for s in _plan(tmp_path, needs_pkg_resources_shim=False).steps if s.name == "tinycudann")
    assert "PYTHONPATH" not in tcnn.env


@pytest.mark.parametrize(
    "torch_cuda, nvcc, problem",
    [
        ("13.0", "13.0.88", None),
        ("13.0", "13.0.48", None),  # a node's own 13.0 compiler
        ("13.0", "13.1.80", "nvcc 13.1.80 is not the pinned 13.0.88"),
        ("12.8", "12.8.93", "no tested compiler pins"),
    ],
)
def test_pin_problems(torch_cuda, nvcc, problem):
    problems = be.pin_problems(torch_cuda, nvcc)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_pins_are_one_cuda_release():
    """Every compiler package pinned to torch's CUDA minor release (pip would otherwise mix a
    13.0 nvcc with later 13.x headers)."""
    for cuda, pins in be.CUDA_COMPILER_PINS.items():
        names = {p.split("==")[0] for p in pins}
        assert {"nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-cccl"} <= names
        assert {"nvidia-cuda-runtime", "nvidia-cuda-nvrtc"} <= names
        assert all(p.split("==")[1].startswith(cuda + ".") for p in pins)


def test_plan_refuses_what_cannot_build(tmp_path):
    trees = _trees(tmp_path / "t", fmt=False)
    p = _plan(tmp_path, archs=[], sources={**trees, "kaolin": tmp_path}, nvcc_version="13.1.80")
    text = " | ".join(p.problems)
    assert "name at least one --arch" in text
    assert "--source kaolin=" in text
    assert "dependencies/fmt is empty" in text and "submodule" in text
    assert "not the pinned" in text


def test_scratch_folder(tmp_path):
    """The C++20 wrapper puts -std=c++20 last; the stub driver has the driver's soname and its
    functions; unversioned names link to the toolkit's versioned libraries; the shim parses."""
    home = tmp_path / "cuda"
    (home / "lib").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "lib/libnvrtc.so.13").write_text("")
    (home / "include/cuda.h").write_text(
        "typedef int CUresult;\n#define cuMemAlloc cuMemAlloc_v2\n"
        "CUresult cuInit(unsigned int);\nCUresult cuMemAlloc(void **, unsigned long);\n"
    )
    p = _plan(tmp_path, cuda_home=home)
    be.prepare_scratch(p)
    wrapper = (p.scratch / "bin/c++20").read_text()
    assert wrapper.rstrip().endswith('"$@" -std=c++20')
    assert os.readlink(p.scratch / "lib/libnvrtc.so") == str(home / "lib/libnvrtc.so.13")
    dyn = subprocess.run(
        ["readelf", "-d", "--dyn-syms", str(p.scratch / "lib/libcuda.so")], capture_output=True, text=True
    )
    assert "[libcuda.so.1]" in dyn.stdout
    assert "cuInit" in dyn.stdout and "cuMemAlloc_v2" in dyn.stdout
    shim = p.scratch / "py/pkg_resources.py"
    namespace: dict = {}
    exec(shim.read_text(), namespace)
    assert namespace["parse_version"]("13.0") >= namespace["parse_version"]("12.8")


def test_cli_plan_prints_the_steps_and_builds_nothing(tmp_path, monkeypatch, capsys):
    trees = _trees(tmp_path)
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    nvcc = home / "bin/nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    monkeypatch.setattr("consistent123.commands.build_extensions.torch_cuda_version", lambda: "13.0")
    rc = cli_main(
        [
            "build-extensions",
            "--arch",
            "90",
            "--out",
            str(tmp_path / "wheels"),
            "--source",
            f"nvdiffrast={trees['nvdiffrast']}",
            "--source",
            f"tinycudann={trees['tinycudann']}",
            "--cuda-home",
            str(home),
            "--plan",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "nvcc 13.0.88" in out and "(nvdiffrast)" in out and "(tinycudann)" in out
    assert not (tmp_path / "wheels").exists()


def test_cli_refuses_a_mismatched_compiler(tmp_path, monkeypatch, capsys):
    trees = _trees(tmp_path)
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin/nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.1, V13.1.80'\n")
    (home / "bin/nvcc").chmod(0o755)
    monkeypatch.setattr("consistent123.commands.build_extensions.torch_cuda_version", lambda: "13.0")
    argv = ["build-extensions", "--arch", "90", "--out", str(tmp_path / "w"), "--cuda-home", str(home)]
    rc = cli_main(argv + ["--source", f"nvdiffrast={trees['nvdiffrast']}"])
    assert rc == 2
    assert "nvcc 13.1.80 is not the pinned 13.0.88" in capsys.readouterr().err


def test_environment_yml_installs_the_pinned_compiler():
    import yaml

    env = yaml.safe_load((Path(__file__).resolve().parents[2] / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    torch_pin = next(p for p in pip if p.startswith("torch=="))
    assert torch_pin == "torch==2.14.1"  # whose wheel is built for CUDA 13.0
    assert set(be.CUDA_COMPILER_PINS["13.0"]) <= set(pip)
