"""``consistent123 build-extensions``: wheels of nvdiffrast and tiny-cuda-nn, built without a GPU.

Both libraries compile against the installed torch, so they are built with ``pip wheel
--no-build-isolation --no-deps`` in this environment, for the GPU architectures named with
``--arch`` (a login node has no GPU to ask). The CUDA compiler comes from NVIDIA's pip packages,
pinned to the CUDA version torch was built with (``CUDA_COMPILER_PINS``): unpinned, pip mixes a
13.0 nvcc with 13.x headers of later releases.

tiny-cuda-nn's ``bindings/torch/setup.py`` needs three things from the build environment; the
project provides them here with flags and environment variables (its code is not changed):

1. it imports ``pkg_resources`` (only for ``parse_version``), which setuptools >= 82 no longer
   ships: with such a setuptools a one-function ``pkg_resources`` module is put on PYTHONPATH;
2. it compiles host files with ``-std=c++17`` while torch 2.14's headers need C++20: ``CXX`` is a
   small wrapper that adds ``-std=c++20`` last (the last ``-std`` wins). nvcc keeps C++17: at
   C++20 it fails on tiny-cuda-nn's fmt;
3. it links ``-lcuda -lnvrtc``, and a pip CUDA toolkit has neither a ``libcuda.so`` stub nor an
   unversioned ``libnvrtc.so``: an empty ``libcuda.so`` with the driver's soname and links to the
   versioned libraries go in a scratch folder on ``LIBRARY_PATH``.

``plan()`` decides everything (environment, commands, pin checks) without compiling; ``build()``
runs it; ``verify()`` loads each built module (on a machine without a driver: with the stub
driver and lazy binding, which proves that everything else it links resolves).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from consistent123.errors import Consistent123Error

# torch's CUDA version -> the pip packages of a matching compiler (nvcc, its front end and
# back end, the runtime headers, libcu++/CUB/Thrust, nvrtc). Tested with torch 2.14.1+cu130.
CUDA_COMPILER_PINS = {
    "13.0": (
        "nvidia-cuda-nvcc==13.0.88",
        "nvidia-cuda-crt==13.0.88",
        "nvidia-nvvm==13.0.88",
        "nvidia-cuda-runtime==13.0.96",
        "nvidia-cuda-cccl==13.0.85",
        "nvidia-cuda-nvrtc==13.0.88",
    ),
}
# The source versions these build steps were tested with (git clone --recursive; tiny-cuda-nn's
# torch bindings need its dependencies/fmt submodule, at the commit its tree records).
TESTED_SOURCES = {
    "nvdiffrast": "v0.4.0 (253ac4fcea7de5f396371124af597e6cc957bfae)",
    "tinycudann": "6ee3546bda615f51abe684ce9edefeb414689135 (v2.0-35), dependencies/fmt at "
    "fa2eb2d2e3ec5c21629f8ccd88ae05ec40b963fa",
}
# Where each library's setup.py is inside its source tree, and the module that proves it loads.
SETUP_DIRS = {"nvdiffrast": ".", "tinycudann": "bindings/torch"}
DRIVER_SONAME = "libcuda.so.1"


class BuildError(Consistent123Error):
    """The build cannot start or did not finish (one line, with what to do)."""


@dataclass
class Step:
    name: str
    cwd: Path
    command: list[str]
    env: dict[str, str]  # what the step sets on top of the caller's environment

    def describe(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"({self.name}) cd {self.cwd} && {env} {shlex.join(self.command)}"


@dataclass
class Plan:
    cuda_home: Path
    nvcc_version: str
    torch_cuda: str
    archs: list[int]
    out: Path
    scratch: Path
    needs_pkg_resources_shim: bool
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def nvcc_release(cuda_home: Path) -> str:
    """'13.0.88' from ``nvcc --version`` ('V13.0.88')."""
    nvcc = cuda_home / "bin" / "nvcc"
    if not nvcc.exists():
        raise BuildError(f"no nvcc in {cuda_home}/bin: {install_hint()}")
    text = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"V(\d+\.\d+\.\d+)", text)
    if not match:
        raise BuildError(f"{nvcc} --version did not print a version")
    return match.group(1)


def install_hint(torch_cuda: Optional[str] = None) -> str:
    torch_cuda = torch_cuda or torch_cuda_version()
    pins = CUDA_COMPILER_PINS.get(torch_cuda)
    if not pins:
        return f"no tested compiler pins for torch's CUDA {torch_cuda}"
    return "pip install " + " ".join(pins) + " (or pass --cuda-home)"


def torch_cuda_version() -> str:
    import torch

    if not torch.version.cuda:
        raise BuildError("torch is a CPU build: install the CUDA build of torch first")
    return torch.version.cuda


def pin_problems(torch_cuda: str, nvcc_version: str) -> list[str]:
    """Why this compiler should not build for this torch (empty: it may). The CUDA release
    (major.minor) must be torch's; another patch level of it (a node's own nvcc) is accepted."""
    if torch_cuda not in CUDA_COMPILER_PINS:
        return [f"torch's CUDA {torch_cuda} has no tested compiler pins ({', '.join(CUDA_COMPILER_PINS)})"]
    want = next(p for p in CUDA_COMPILER_PINS[torch_cuda] if p.startswith("nvidia-cuda-nvcc=="))
    want = want.split("==")[1]
    if nvcc_version.split(".")[:2] != torch_cuda.split(".")[:2]:
        return [
            f"nvcc {nvcc_version} is not the pinned {want} for torch's CUDA {torch_cuda}: {install_hint(torch_cuda)}"
        ]
    return []


def site_cuda_homes() -> list[Path]:
    """``nvidia/cuXX`` folders of the pip CUDA packages installed in this environment."""
    roots = [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
    return [home for root in roots for home in sorted(root.glob("nvidia/cu[0-9]*")) if home.is_dir()]


def find_cuda_home(explicit: Optional[str]) -> Path:
    """--cuda-home, else pip's ``nvidia/cuXX`` with an nvcc, else CUDA_HOME, else nvcc on PATH."""
    if explicit:
        return Path(explicit).resolve()
    for home in site_cuda_homes():
        if (home / "bin" / "nvcc").exists():
            return home
    if os.environ.get("CUDA_HOME"):
        return Path(os.environ["CUDA_HOME"])
    nvcc = shutil.which("nvcc")
    if nvcc:
        return Path(nvcc).resolve().parent.parent
    raise BuildError(f"no CUDA compiler found: {install_hint()}")


def pkg_resources_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("pkg_resources") is None


def plan(
    archs: list[int],
    out: Path,
    sources: dict[str, Path],
    scratch: Path,
    cuda_home: Path,
    nvcc_version: str,
    torch_cuda: str,
    needs_pkg_resources_shim: bool,
    include_dirs: list[Path] = (),
    jobs: Optional[int] = None,
) -> Plan:
    """The steps and environment of a build; nothing is run or written."""
    p = Plan(cuda_home, nvcc_version, torch_cuda, sorted(set(archs)), out, scratch, needs_pkg_resources_shim)
    p.problems += pin_problems(torch_cuda, nvcc_version)
    if not archs:
        p.problems.append("name at least one --arch (e.g. 90 for H100/H200, 80 for A100)")
    for name, src in sources.items():
        if name not in SETUP_DIRS:
            p.problems.append(f"--source {name}=...: expected one of {', '.join(SETUP_DIRS)}")
        elif not (src / SETUP_DIRS[name] / "setup.py").exists():
            p.problems.append(f"{name}: no {SETUP_DIRS[name]}/setup.py in {src}")
        elif name == "tinycudann" and not (src / "dependencies/fmt/src/format.cc").exists():
            p.problems.append(
                f"tinycudann: {src}/dependencies/fmt is empty; fetch the submodule "
                "(git clone --recursive, or git submodule update --init dependencies/fmt)"
            )
    lib = scratch / "lib"
    common = {
        "CUDA_HOME": str(cuda_home),
        "PATH": f"{cuda_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # the pip toolkit's runtime headers, then those of torch's own CUDA wheels (cuBLAS ...)
        "CPATH": os.pathsep.join(str(d) for d in [cuda_home / "include", *include_dirs]),
        "LIBRARY_PATH": os.pathsep.join([str(lib), str(cuda_home / "lib")]),
        "MAX_JOBS": str(jobs or os.cpu_count() or 1),
    }
    dotted = ";".join(f"{a // 10}.{a % 10}" for a in p.archs)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", str(out)]
    if "nvdiffrast" in sources:
        env = dict(common, TORCH_CUDA_ARCH_LIST=dotted)
        p.steps.append(Step("nvdiffrast", sources["nvdiffrast"], [*pip, "."], env))
    if "tinycudann" in sources:
        env = dict(
            common,
            TCNN_CUDA_ARCHITECTURES=";".join(map(str, p.archs)),
            # host files at C++20 (torch's headers), nvcc stays at tiny-cuda-nn's C++17
            CXX=str(scratch / "bin" / "c++20"),
        )
        if needs_pkg_resources_shim:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch / "py"), os.environ.get("PYTHONPATH")]))
        # The hash-grid encodings are all the project uses: no fully fused MLP, no cutlass.
        command = [*pip, "--use-pep517", "--config-settings=--build-option=--no-networks", "."]
        p.steps.append(Step("tinycudann", sources["tinycudann"] / SETUP_DIRS["tinycudann"], command, env))
    return p


PKG_RESOURCES_SHIM = '''"""The one function tiny-cuda-nn's setup.py takes from pkg_resources (gone from setuptools 82)."""
from packaging.version import parse as parse_version  # noqa: F401
'''


def prepare_scratch(p: Plan) -> None:
    """The scratch folder of ``p``: the C++20 host-compiler wrapper, the link folder (stub driver,
    unversioned names of the toolkit's versioned libraries) and, if needed, the pkg_resources shim."""
    (p.scratch / "bin").mkdir(parents=True, exist_ok=True)
    lib = p.scratch / "lib"
    lib.mkdir(exist_ok=True)
    real_cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX").split()[0] or "c++"
    wrapper = p.scratch / "bin" / "c++20"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(shutil.which(real_cxx) or real_cxx)} "$@" -std=c++20\n')
    wrapper.chmod(0o755)
    stub = lib / "libcuda.so"
    if not stub.exists():
        write_driver_stub(p.cuda_home / "include" / "cuda.h", stub, p.scratch)
    for base in ("libnvrtc", "libcudart"):
        link = lib / f"{base}.so"
        versioned = sorted((p.cuda_home / "lib").glob(f"{base}.so.[0-9]*"))
        if versioned and not link.exists():
            link.symlink_to(versioned[0])
    if p.needs_pkg_resources_shim:
        (p.scratch / "py").mkdir(exist_ok=True)
        (p.scratch / "py" / "pkg_resources.py").write_text(PKG_RESOURCES_SHIM)


def driver_functions(cuda_h: Path) -> list[str]:
    """The driver API's function names as the toolkit's ``cuda.h`` declares them (after its
    macros, e.g. cuMemAlloc -> cuMemAlloc_v2)."""
    text = subprocess.run(["cc", "-E", "-P", "-x", "c", str(cuda_h)], capture_output=True, text=True, check=True).stdout
    return sorted(set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", text)))


def write_driver_stub(cuda_h: Path, stub: Path, scratch: Path) -> None:
    """A link-time ``libcuda.so``: every driver function as an empty symbol, soname libcuda.so.1
    (what a toolkit's ``lib64/stubs`` holds; the node's driver replaces it at run time). The
    symbols matter: a library that provides none of them is dropped by --as-needed links, and
    the extension would then not record libcuda.so.1 at all."""
    src = scratch / "cuda_stub.c"
    src.write_text("".join(f"void {name}(void) {{}}\n" for name in driver_functions(cuda_h)))
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(stub), f"-Wl,-soname,{DRIVER_SONAME}", str(src)], check=True)
    (stub.parent / DRIVER_SONAME).unlink(missing_ok=True)
    (stub.parent / DRIVER_SONAME).symlink_to(stub.name)  # for verify() on a machine without a driver


def build(p: Plan, log_dir: Path) -> list[dict]:
    """Run every step (each logged to LOG_DIR/NAME.log); the wheel, its size and time of each."""
    prepare_scratch(p)
    p.out.mkdir(parents=True, exist_ok=True)
    results = []
    for step in p.steps:
        before = set(p.out.glob("*.whl"))
        log = log_dir / f"{step.name}.log"
        start = time.monotonic()
        with open(log, "w") as fh:
            fh.write(step.describe() + "\n")
            fh.flush()
            rc = subprocess.run(
                step.command, cwd=step.cwd, env={**os.environ, **step.env}, stdout=fh, stderr=subprocess.STDOUT
            ).returncode
        seconds = time.monotonic() - start
        wheels = sorted(set(p.out.glob("*.whl")) - before) or sorted(p.out.glob(f"{step.name}-*.whl"))
        if rc != 0 or not wheels:
            raise BuildError(f"{step.name}: pip wheel failed (exit {rc}) after {seconds:.0f} s; see {log}")
        results.append(
            {"name": step.name, "wheel": wheels[-1], "seconds": seconds, "mib": wheels[-1].stat().st_size / 2**20}
        )
    return results


def extension_modules(wheel: Path) -> list[str]:
    """The compiled modules inside a wheel, as import names."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".so")]
    return [n.split(".")[0].replace("/", ".") for n in names]


VERIFY = """
import sys
import torch  # its libraries (libc10, libtorch, libcudart) first, as on import of the package
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
    print("loaded", name)
"""


def verify(p: Plan, wheels: list[Path]) -> list[str]:
    """Install the wheels into a scratch folder and load every compiled module in a fresh Python
    (without a driver: against the stub, so every symbol the module needs must resolve)."""
    target = p.scratch / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), *map(str, wheels)],
        check=True,
        capture_output=True,
    )
    modules = [m for w in wheels for m in extension_modules(w)]
    import torch

    env = {**os.environ, "PYTHONPATH": str(target)}
    if not torch.cuda.is_available():  # no driver here: the stub stands in for it, symbols and all
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(p.scratch / "lib"), os.environ.get("LD_LIBRARY_PATH")])
        )
    run = subprocess.run([sys.executable, "-c", VERIFY, *modules], env=env, capture_output=True, text=True, cwd=target)
    if run.returncode != 0:
        raise BuildError(f"built modules do not load: {run.stderr.strip().splitlines()[-1:]}")
    return modules


def parse_sources(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise BuildError(f"--source {item!r}: expected NAME=DIR (nvdiffrast=DIR, tinycudann=DIR)")
        out[name] = Path(path).resolve()
    return out
