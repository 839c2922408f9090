#!/usr/bin/env bash
# One self-contained check of a fresh GPU node without network (docs/gpu.md). Everything it
# reads is inside the checkout: .whl/ and .src/ (perf/prepare_gpu_bundle.sh makes them).
# Writes OUT/summary.txt (one line per step: PASS / FAIL / SKIP and why, then the figures) and
# the logs beside it; installs nothing outside OUT.
#
#   bash perf/gpu_check.sh --plan        print the steps (any machine), exit 0
#   bash perf/gpu_check.sh OUT           run the check on the node
#
#   GPU_CHECK_BUDGET_S (default 420)  seconds for everything; each step gets at most what is left
#   GPU_CHECK_JOBS     (default: all cores) compile jobs, split between the two builds
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUDGET=${GPU_CHECK_BUDGET_S:-420}
PY=${PYTHON:-python3}
JOBS=${GPU_CHECK_JOBS:-$(nproc)}
TORCH_TESTED=2.14.1

plan() {
  cat <<EOF
gpu_check.sh: steps (each one line in OUT/summary.txt: PASS / FAIL / SKIP and why), budget ${BUDGET}s
  1 node        nvidia-smi; torch imports, is a CUDA build (tested: $TORCH_TESTED), sees the GPU; nvcc's CUDA
                release (major.minor) equals torch.version.cuda's
  2 install     wheels of .whl/ whose distribution the node lacks: pip install --no-deps --no-index --target OUT/site
                (never torch; the project itself runs from the checkout on PYTHONPATH)
  3 extensions  consistent123 build-extensions for this GPU's architecture from .src/nvdiffrast and
                .src/tiny-cuda-nn, both at once ($JOBS jobs split between them), each module loaded on the GPU;
                the wheels installed into OUT/site
  4 backends    what consistent123.backends resolves on cuda (hash grid, rasteriser, marching tets, dtypes)
  5 gpu tests   REQUIRE_GPU=1 python -m pytest -m gpu (every skip is a failure), including the CUDA end-to-end
                test tests/gpu/test_gpu_end_to_end.py
  6 render      perf/render_speed.py --device cuda (the resolved backends, named in each line)
  7 iteration   perf/iteration_speed.py --models full --device cuda, short: eager against optimised (it
                fails when a switch of the optimised mode is not in effect), then the projected memory table
  8 summary     OUT/summary.txt (steps, versions, figures); logs OUT/*.log
EOF
}

case "${1:-}" in
  --plan) plan; exit 0 ;;
  ""|-h|--help) sed -n 2,12p "$0"; exit 2 ;;
esac

mkdir -p "$1" || exit 1
OUT=$(cd "$1" && pwd)
SITE=$OUT/site
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
START=$SECONDS
FAILED=0
left() { echo $(( BUDGET - (SECONDS - START) )); }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }  # min(ARG, time left)
record() {  # STATUS STEP MESSAGE
  printf '%-4s %-11s %s (at %ss)\n' "$1" "$2" "$3" "$((SECONDS - START))" | tee -a "$SUMMARY"
  [ "$1" = FAIL ] && FAILED=1
  return 0
}
finish() {
  echo "elapsed $((SECONDS - START))s of ${BUDGET}s" >> "$SUMMARY"
  for f in "$OUT"/bench_*.txt; do [ -f "$f" ] && { echo "--- $(basename "$f")"; cat "$f"; } >> "$SUMMARY"; done
  echo "summary: $SUMMARY"
  exit $FAILED
}
export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
cd "$ROOT" || exit 1

# 1 node ---------------------------------------------------------------------------------
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/node.log" 2>&1
NODE=$("$PY" - <<'EOF' 2>>"$OUT/node.log"
import re, shutil, subprocess
import torch
problems = []
if torch.version.cuda is None:
    problems.append("torch is a CPU build")
if not torch.cuda.is_available():
    problems.append("torch sees no GPU")
nvcc = shutil.which("nvcc")
out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout if nvcc else ""
m = re.search(r"V(\d+\.\d+\.\d+)", out)
nvcc_v = m.group(1) if m else None
if nvcc_v is None:
    problems.append("no nvcc on PATH")
elif torch.version.cuda and nvcc_v.split(".")[:2] != torch.version.cuda.split(".")[:2]:
    problems.append(f"nvcc {nvcc_v} is not torch's CUDA {torch.version.cuda}")
cc = "".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "?"
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
print(f"{name}|{cc}|torch {torch.__version__} (CUDA {torch.version.cuda}), nvcc {nvcc_v}|{'; '.join(problems)}")
EOF
)
IFS='|' read -r GPU_NAME CC VERSIONS PROBLEMS <<< "$NODE"
if [ -z "$NODE" ] || [ -n "$PROBLEMS" ]; then
  record FAIL node "${PROBLEMS:-torch does not import (node.log)}; $VERSIONS"
  finish
fi
case "$VERSIONS" in "torch $TORCH_TESTED"*) note="" ;; *) note=" (tested with $TORCH_TESTED)" ;; esac
record PASS node "$GPU_NAME, sm_$CC, $VERSIONS$note"

# 2 install ------------------------------------------------------------------------------
if [ ! -d "$ROOT/.whl" ] || [ ! -d "$ROOT/.src" ]; then
  record FAIL install "no .whl/ or .src/ in the checkout (bash perf/prepare_gpu_bundle.sh, docs/gpu.md)"
  finish
fi
MISSING=$("$PY" - "$ROOT/.whl" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    dist = wheel.name.split("-")[0]
    try:
        version(dist)
    except PackageNotFoundError:
        print(wheel)
EOF
)
if [ -n "$MISSING" ]; then
  echo "$MISSING" | tr '\n' '\0' | xargs -0 timeout "$(cap 120)" "$PY" -m pip install --quiet --no-deps --no-index \
    --target "$SITE" > "$OUT/install.log" 2>&1 || { record FAIL install "pip could not install the bundle (install.log)"; finish; }
fi
if "$PY" -c "import consistent123.training.trainer, eval.evaluate, mlflow, diffusers, open_clip, lpips" >> "$OUT/install.log" 2>&1; then
  record PASS install "$(echo "$MISSING" | grep -c .) wheels of .whl/ installed into $SITE"
else
  record FAIL install "the project does not import (install.log)"
  finish
fi

# 3 extensions ---------------------------------------------------------------------------
build() {  # NAME SOURCE
  timeout "$(cap 330)" "$PY" -m consistent123.cli build-extensions --arch "$CC" --out "$OUT/wheels" \
    --source "$1=$ROOT/.src/$2" --jobs $(( JOBS > 1 ? JOBS / 2 : 1 )) > "$OUT/build_$1.log" 2>&1
}
build nvdiffrast nvdiffrast & NVDR=$!
build tinycudann tiny-cuda-nn & TCNN=$!
for pair in "nvdiffrast:$NVDR" "tinycudann:$TCNN"; do
  name=${pair%%:*}
  if wait "${pair#*:}"; then
    record PASS "$name" "$(grep -E ' MiB in ' "$OUT/build_$name.log" | tail -1); $(grep -c '^loads:' "$OUT/build_$name.log") module(s) load"
  else
    record FAIL "$name" "build failed or ran out of time ($(tail -1 "$OUT/build_$name.log" | cut -c1-160); build_$name.log)"
  fi
done
ls "$OUT"/wheels/*.whl > /dev/null 2>&1 && "$PY" -m pip install --quiet --no-deps --no-index --target "$SITE" \
  "$OUT"/wheels/*.whl >> "$OUT/install.log" 2>&1

# 4 backends -----------------------------------------------------------------------------
CHOSEN=$("$PY" -c "import torch; from consistent123.backends import resolve_all; from consistent123.config import Config; print(resolve_all(Config(), torch.device('cuda')).describe())" 2>>"$OUT/node.log")
if [ -z "$CHOSEN" ]; then record FAIL backends "resolution failed (node.log)"
elif echo "$CHOSEN" | grep -q "fallbacks=$"; then record PASS backends "$CHOSEN"
else record FAIL backends "$CHOSEN"
fi

# 5 gpu tests ----------------------------------------------------------------------------
T=$(cap 150)
REQUIRE_GPU=1 timeout "$T" "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" -m gpu > "$OUT/pytest_gpu.log" 2>&1
rc=$?
line=$(grep -E "passed|failed|error" "$OUT/pytest_gpu.log" | tail -1)
if [ $rc -eq 0 ]; then record PASS gpu-tests "$line"
elif [ $rc -eq 124 ]; then record FAIL gpu-tests "timed out after ${T}s (pytest_gpu.log)"
else record FAIL gpu-tests "${line:-exit $rc} (pytest_gpu.log)"
fi

# 6, 7 speed -----------------------------------------------------------------------------
bench() {  # NAME SECONDS SCRIPT ARGS...
  local name=$1 limit; limit=$(cap "$2"); shift 2
  if [ "$limit" -lt 20 ]; then record SKIP "$name" "$(left)s left"; return; fi
  if timeout "$limit" "$PY" "$@" > "$OUT/bench_$name.txt" 2>"$OUT/bench_$name.log"; then
    record PASS "$name" "$*"
  else
    record FAIL "$name" "$* (exit or timeout after ${limit}s; bench_$name.log)"
  fi
}
bench render 40 perf/render_speed.py --device cuda --runs 3
bench iteration 300 perf/iteration_speed.py --models full --device cuda --iters 3 --ref-iters 1 --warmup 1
finish
