#!/usr/bin/env bash
# One self-contained check of a fresh GPU node, without network access, in under 10 minutes on
# one H100 (docs/gpu.md). Writes one summary file, OUT/summary.txt, plus the logs beside it.
#
#   bash perf/gpu_check.sh --plan                     print the steps (any machine), exit 0
#   bash perf/gpu_check.sh --download-wheels DIR      with network: fetch the wheels it installs
#   bash perf/gpu_check.sh OUT                        run the check on the node
#
# Inputs beside the checkout (override with the variables):
#   GPU_CHECK_WHEELS   (default ../wheels)   wheels of the project's dependencies, torch excluded
#   GPU_CHECK_SOURCES  (default ../sources)  nvdiffrast/ and optionally tiny-cuda-nn/ source trees
#   GPU_CHECK_BUDGET_S (default 570)         seconds for everything; tiny-cuda-nn is built only
#                                            when at least TCNN_BUILD_S (default 480) are left
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/../wheels}
SOURCES=${GPU_CHECK_SOURCES:-$ROOT/../sources}
BUDGET=${GPU_CHECK_BUDGET_S:-570}
TCNN_BUILD_S=${TCNN_BUILD_S:-480}
PY=${PYTHON:-python3}
# The preinstalled torch is accepted when it is a CUDA build, at least this version, and its
# CUDA major version equals nvcc's (extension builds need that). 2.14.1 is the tested one.
TORCH_MIN=2.4
TORCH_TESTED=2.14.1
# Dependencies the check never uses (workflow engine, mp4 encoder: turntables fall back to gif);
# left out of the wheel folder and the install so that it stays small.
export GPU_CHECK_UNUSED=${GPU_CHECK_UNUSED:-"snakemake snakemake-executor-plugin-slurm imageio-ffmpeg"}

plan() {
  cat <<EOF
gpu_check.sh: steps (each one line in OUT/summary.txt: PASS / FAIL / SKIP and why)
  1 node      nvidia-smi; torch imports, is a CUDA build >= $TORCH_MIN (tested: $TORCH_TESTED), sees the GPU;
              nvcc's CUDA major version equals torch.version.cuda's
  2 install   pip install --no-index from $WHEELS: the project's missing dependencies (never torch;
              not: $GPU_CHECK_UNUSED), then the project itself (--no-deps --no-build-isolation)
  3 nvdiffrast build from $SOURCES/nvdiffrast --no-build-isolation for this GPU's architecture,
              then rasterise one triangle with RasterizeCudaContext
  4 tcnn      build tiny-cuda-nn (encodings only, this GPU's architecture) from $SOURCES/tiny-cuda-nn
              when >= ${TCNN_BUILD_S}s of the ${BUDGET}s budget are left, else SKIP
  5 backends  what consistent123.backends resolves on cuda (hash grid, rasteriser, marching tets, dtypes)
  6 gpu tests REQUIRE_GPU=1 python -m pytest -m gpu (every skip is a failure): tcnn-vs-torch hash-grid
              parity, nvdiffrast-vs-torch rasteriser parity; then, as its own line, the CUDA end-to-end
              test tests/gpu/test_gpu_end_to_end.py (preprocess -> reconstruct -> export -> evaluate with
              the tiny priors, backends logged to MLflow, resume within tolerance)
  7 speed     perf/iteration_speed.py --models full --device cuda (--device cuda alone where the
              script has no --models; SKIP where it has no --device) and perf/render_speed.py --device cuda --backend <the resolved hash grid>
  8 summary   OUT/summary.txt (steps, versions, benchmark figures); logs OUT/*.log
EOF
}

download_wheels() {
  # The project's direct dependencies (torch and torchvision excluded: the node's own are used)
  # as wheels for the node's Python. Their own dependencies that the node lacks must be added
  # too: step 2 names every one pip cannot find in install.log.
  local dest=$1
  mkdir -p "$dest"
  "$PY" - "$ROOT/pyproject.toml" <<'EOF' | tr '\n' '\0' | xargs -0 "$PY" -m pip download --dest "$dest" --no-deps \
      --only-binary=:all: --python-version "${NODE_PYTHON:-3.12}" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
import os, sys, tomllib
from packaging.requirements import Requirement
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
skip = {"torch", "torchvision", *os.environ["GPU_CHECK_UNUSED"].split()}
print("\n".join(d for d in p["dependencies"] + p["optional-dependencies"]["test"] if Requirement(d).name not in skip))
EOF
  echo "wheels in $dest; sources: git clone https://github.com/NVlabs/nvdiffrast $SOURCES/nvdiffrast;" \
       "git clone --recursive https://github.com/NVlabs/tiny-cuda-nn $SOURCES/tiny-cuda-nn"
}

case "${1:-}" in
  --plan) plan; exit 0 ;;
  --download-wheels) download_wheels "${2:?--download-wheels DIR}"; exit $? ;;
  ""|-h|--help) sed -n 2,15p "$0"; exit 2 ;;
esac

mkdir -p "$1" || exit 1
OUT=$(cd "$1" && pwd)  # absolute: the steps run from the repository root
WHEELS=$(realpath -m "$WHEELS")
SOURCES=$(realpath -m "$SOURCES")
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
START=$SECONDS
FAILED=0
left() { echo $(( BUDGET - (SECONDS - START) )); }
record() {  # STATUS STEP MESSAGE
  printf '%-4s %-10s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"
  [ "$1" = FAIL ] && FAILED=1
  return 0
}
finish() {
  echo "elapsed ${SECONDS}s of ${BUDGET}s" >> "$SUMMARY"
  for f in "$OUT"/bench_*.txt; do [ -f "$f" ] && { echo "--- $(basename "$f")"; cat "$f"; } >> "$SUMMARY"; done
  echo "summary: $SUMMARY"
  exit $FAILED
}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cd "$ROOT" || exit 1

# 1 node ---------------------------------------------------------------------------------
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/node.log" 2>&1
NODE=$("$PY" - "$TORCH_MIN" <<'EOF' 2>>"$OUT/node.log"
import re, shutil, subprocess, sys
import torch
from packaging.version import Version
v = Version(torch.__version__.split("+")[0])
problems = []
if torch.version.cuda is None:
    problems.append("torch is a CPU build")
if v < Version(sys.argv[1]):
    problems.append(f"torch {v} is older than {sys.argv[1]}")
if not torch.cuda.is_available():
    problems.append("torch sees no GPU")
nvcc = shutil.which("nvcc")
nvcc_v = re.search(r"release (\d+\.\d+)", subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout).group(1) if nvcc else None
if nvcc_v is None:
    problems.append("no nvcc on PATH")
elif torch.version.cuda and nvcc_v.split(".")[0] != torch.version.cuda.split(".")[0]:
    problems.append(f"nvcc {nvcc_v} and torch's CUDA {torch.version.cuda} differ in major version")
cc = "".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "?"
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
print(f"{name}|{cc}|torch {torch.__version__} (CUDA {torch.version.cuda}), nvcc {nvcc_v}|{'; '.join(problems)}")
EOF
)
IFS='|' read -r GPU_NAME CC VERSIONS PROBLEMS <<< "$NODE"
if [ -z "$NODE" ] || [ -n "$PROBLEMS" ]; then
  record FAIL node "${PROBLEMS:-torch does not import (see node.log)}; $VERSIONS"
  finish
fi
case "$VERSIONS" in "torch $TORCH_TESTED"*) note="" ;; *) note=" (tested with $TORCH_TESTED)" ;; esac
record PASS node "$GPU_NAME, sm_$CC, $VERSIONS$note"
ARCH_DOTTED="${CC:0:${#CC}-1}.${CC: -1}"

# 2 install ------------------------------------------------------------------------------
if [ ! -d "$WHEELS" ]; then
  record FAIL install "no wheel folder $WHEELS (make it with --download-wheels on a machine with network)"
  finish
fi
MISSING=$("$PY" - "$ROOT/pyproject.toml" <<'EOF'
import os, sys, tomllib
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
out = []
for spec in p["dependencies"] + p["optional-dependencies"]["test"]:
    req = Requirement(spec)
    if req.name in ("torch", "torchvision") or req.name in os.environ["GPU_CHECK_UNUSED"].split():
        continue  # the node's own torch is what is checked
    try:
        version(req.name)
    except PackageNotFoundError:
        out.append(spec)
print("\n".join(out))
EOF
)
if [ -n "$MISSING" ]; then
  echo "$MISSING" | tr '\n' '\0' | xargs -0 timeout "$(left)" "$PY" -m pip install --no-index --find-links "$WHEELS" \
    > "$OUT/install.log" 2>&1 || { record FAIL install "pip could not install: $(echo "$MISSING" | tr '\n' ' ') (install.log)"; finish; }
fi
timeout 120 "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$ROOT" >> "$OUT/install.log" 2>&1 \
  || { record FAIL install "the project itself (install.log)"; finish; }
record PASS install "$(echo "$MISSING" | grep -c . ) missing packages installed from $WHEELS"

# 3 nvdiffrast ---------------------------------------------------------------------------
if "$PY" -c "import nvdiffrast.torch" 2>/dev/null; then
  record PASS nvdiffrast "already installed"
elif [ -d "$SOURCES/nvdiffrast" ]; then
  TORCH_CUDA_ARCH_LIST=$ARCH_DOTTED timeout 240 "$PY" -m pip install --no-index --no-deps --no-build-isolation \
    "$SOURCES/nvdiffrast" > "$OUT/nvdiffrast.log" 2>&1
  # Older nvdiffrast releases compile their CUDA plugin on first use: do it here, timed.
  if TORCH_CUDA_ARCH_LIST=$ARCH_DOTTED timeout "$(( $(left) > 240 ? 240 : $(left) ))" "$PY" - >> "$OUT/nvdiffrast.log" 2>&1 <<'EOF'
import torch, nvdiffrast.torch as dr
ctx = dr.RasterizeCudaContext()
pos = torch.tensor([[[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [0, 0.5, 0, 1]]], device="cuda")
rast, _ = dr.rasterize(ctx, pos, torch.tensor([[0, 1, 2]], dtype=torch.int32, device="cuda"), (16, 16))
assert (rast[..., 3] > 0).sum() > 20
EOF
  then record PASS nvdiffrast "built for sm_$CC and rasterised a triangle"
  else record FAIL nvdiffrast "build or first use failed (nvdiffrast.log)"
  fi
else
  record FAIL nvdiffrast "no source tree $SOURCES/nvdiffrast"
fi

# 4 tcnn ---------------------------------------------------------------------------------
if "$PY" -c "import tinycudann" 2>/dev/null; then
  record PASS tcnn "already installed"
elif [ ! -d "$SOURCES/tiny-cuda-nn/bindings/torch" ]; then
  record SKIP tcnn "no source tree $SOURCES/tiny-cuda-nn (hash grid runs on the torch backend)"
elif [ "$(left)" -lt "$TCNN_BUILD_S" ]; then
  record SKIP tcnn "$(left)s left: a build is tried only with ${TCNN_BUILD_S}s left (300s stay for the tests)"
else
  if (cd "$SOURCES/tiny-cuda-nn/bindings/torch" && rm -rf dist build \
      && TCNN_CUDA_ARCHITECTURES=$CC timeout "$(( $(left) - 300 ))" "$PY" setup.py bdist_wheel --no-networks \
      && "$PY" -m pip install --no-index --no-deps dist/*.whl) > "$OUT/tcnn.log" 2>&1 \
     && "$PY" -c "import tinycudann" >> "$OUT/tcnn.log" 2>&1; then
    record PASS tcnn "built for sm_$CC (encodings only)"
  else
    record FAIL tcnn "build failed or ran out of time (tcnn.log)"
  fi
fi

# 5 backends -----------------------------------------------------------------------------
CHOSEN=$("$PY" -c "import torch; from consistent123.backends import resolve_all; from consistent123.config import Config; print(resolve_all(Config(), torch.device('cuda')).describe())" 2>>"$OUT/node.log")
if [ -n "$CHOSEN" ]; then record PASS backends "$CHOSEN"; else record FAIL backends "resolution failed (node.log)"; fi

# 6 gpu tests ----------------------------------------------------------------------------
gpu_tests() {  # NAME LOG SECONDS_TO_KEEP PYTEST_ARGS...
  local name=$1 log=$2 keep=$3; shift 3
  local t=$(( $(left) - keep ))
  if [ "$t" -lt 30 ]; then record FAIL "$name" "only $(left)s left"; return; fi
  REQUIRE_GPU=1 timeout "$t" "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" "$@" > "$OUT/$log" 2>&1
  local rc=$? line
  line=$(grep -E "passed|failed|error" "$OUT/$log" | tail -1)
  if [ $rc -eq 0 ]; then record PASS "$name" "$line"
  elif [ $rc -eq 124 ]; then record FAIL "$name" "timed out after ${t}s ($log)"
  else record FAIL "$name" "${line:-exit $rc} ($log)"
  fi
}
gpu_tests gpu-tests pytest_gpu.log 300 -m gpu --ignore=tests/gpu/test_gpu_end_to_end.py
gpu_tests end-to-end pytest_e2e.log 130 tests/gpu/test_gpu_end_to_end.py

# 7 speed --------------------------------------------------------------------------------
bench() {  # NAME SECONDS SCRIPT ARGS...
  local name=$1 limit=$2; shift 2
  if [ "$(left)" -lt 20 ]; then record SKIP "$name" "no time left"; return; fi
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  if timeout "$limit" "$PY" "$@" > "$OUT/bench_$name.txt" 2>"$OUT/bench_$name.log"; then
    record PASS "$name" "$*"
  else
    record FAIL "$name" "$* (bench_$name.log)"
  fi
}
if "$PY" perf/iteration_speed.py --help 2>/dev/null | grep -q -- "--models"; then
  bench iteration 60 perf/iteration_speed.py --models full --device cuda
elif "$PY" perf/iteration_speed.py --help 2>/dev/null | grep -q -- "--device"; then
  bench iteration 60 perf/iteration_speed.py --device cuda
else
  record SKIP iteration "perf/iteration_speed.py has no --device option here: it times the CPU only"
fi
# render_speed builds its field before moving it: name the hash grid the node resolved.
HG=$(echo "$CHOSEN" | sed -n 's/.*hashgrid=\([a-z]*\).*/\1/p')
bench render 60 perf/render_speed.py --device cuda --backend "${HG:-torch}" --runs 3

# 8 summary ------------------------------------------------------------------------------
finish
