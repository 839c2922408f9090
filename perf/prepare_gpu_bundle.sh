#!/usr/bin/env bash
# Prepare what perf/gpu_check.sh needs on a GPU node without network, inside the
# repository's ignored folders (carried with the working tree, <= 45 MiB in all):
#
#   .src/nvdiffrast, .src/tiny-cuda-nn   the minimal source trees the two builds read
#   .whl/                                 wheels (Python 3.12, manylinux x86_64, --no-deps) of the
#                                         project's dependencies that a CUDA torch image lacks
#
#   bash perf/prepare_gpu_bundle.sh --nvdiffrast DIR --tcnn DIR [--fmt DIR]
#
# DIR: git clones (or git directories) of the tested versions (docs/gpu.md): each tree is exported
# at its commit with `git archive` (only the folders the builds read), tiny-cuda-nn's
# dependencies/fmt from --fmt (a clone of fmtlib/fmt) at the commit tiny-cuda-nn records, or from
# DIR/dependencies/fmt when it is checked out. Wheels: BUNDLE_WHEELS (default below) lists them;
# BUNDLE_PYTHON (3.12) is the node's Python.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NVDR_COMMIT=253ac4fcea7de5f396371124af597e6cc957bfae  # v0.4.0
TCNN_COMMIT=6ee3546bda615f51abe684ce9edefeb414689135  # v2.0-35
LIMIT_MIB=45
# The project's own dependencies a CUDA PyTorch image does not ship (numpy, scipy, pandas,
# pillow, matplotlib, scikit-image, pyyaml and torch's own come with it); mlflow-skinny for
# mlflow (no pyarrow), no ruff, no snakemake: the check runs neither. Installed with --no-deps:
# the list is what `import mlflow` and an SQLite tracking store need in a clean Python 3.12
# (found by installing it there and running an MLflow run), hf-xet left out (downloads only).
BUNDLE_WHEELS=${BUNDLE_WHEELS:-"diffusers transformers tokenizers open_clip_torch timm accelerate safetensors
huggingface_hub pydantic pydantic-core annotated-types typing-inspection trimesh xatlas pymcubes lpips
mlflow-skinny fastapi starlette annotated-doc anyio lazy-importer databricks-sdk cryptography cffi sqlalchemy
alembic mako greenlet cachetools click cloudpickle gitpython gitdb smmap opentelemetry-api opentelemetry-sdk
opentelemetry-semantic-conventions opentelemetry-proto protobuf sqlparse importlib-metadata zipp ftfy regex
wcwidth imageio lazy-loader tifffile tqdm pytest pluggy iniconfig pytest-timeout rich markdown-it-py mdurl pygments"}
PY=${PYTHON:-python3}

nvdr= tcnn= fmt=
while [ $# -gt 0 ]; do
  case "$1" in
    --nvdiffrast) nvdr=$2; shift 2 ;;
    --tcnn) tcnn=$2; shift 2 ;;
    --fmt) fmt=$2; shift 2 ;;
    *) sed -n 2,17p "$0"; exit 2 ;;
  esac
done
[ -n "$nvdr" ] && [ -n "$tcnn" ] || { sed -n 2,17p "$0"; exit 2; }

gitdir() { if [ -d "$1/.git" ]; then echo "$1/.git"; else echo "$1"; fi; }
export_tree() {  # GITDIR COMMIT DEST PATHS...
  local g=$1 c=$2 d=$3; shift 3
  mkdir -p "$d"
  git --git-dir="$g" archive "$c" -- "$@" | tar -x -C "$d"
}

rm -rf "$ROOT/.src"
export_tree "$(gitdir "$nvdr")" $NVDR_COMMIT "$ROOT/.src/nvdiffrast" csrc nvdiffrast setup.py pyproject.toml LICENSE.txt README.md
export_tree "$(gitdir "$tcnn")" $TCNN_COMMIT "$ROOT/.src/tiny-cuda-nn" bindings include src CMakeLists.txt LICENSE.txt \
  dependencies/json dependencies/pcg32 dependencies/pybind11_json
FMT_COMMIT=$(git --git-dir="$(gitdir "$tcnn")" ls-tree $TCNN_COMMIT dependencies/fmt | awk '{print $3}')
if [ -n "$fmt" ]; then
  export_tree "$(gitdir "$fmt")" "$FMT_COMMIT" "$ROOT/.src/tiny-cuda-nn/dependencies/fmt" include src
elif [ -f "$tcnn/dependencies/fmt/src/format.cc" ]; then
  mkdir -p "$ROOT/.src/tiny-cuda-nn/dependencies/fmt"
  cp -r "$tcnn/dependencies/fmt/include" "$tcnn/dependencies/fmt/src" "$ROOT/.src/tiny-cuda-nn/dependencies/fmt/"
else
  echo "tiny-cuda-nn's dependencies/fmt ($FMT_COMMIT) is not checked out: pass --fmt DIR" >&2
  exit 1
fi
echo "sources: nvdiffrast $NVDR_COMMIT, tiny-cuda-nn $TCNN_COMMIT, fmt $FMT_COMMIT; $(du -sh "$ROOT/.src" | cut -f1)"

rm -rf "$ROOT/.whl" && mkdir -p "$ROOT/.whl"
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$ROOT/.whl" \
  --python-version "${BUNDLE_PYTHON:-3.12}" --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any $BUNDLE_WHEELS
total=$(( $(du -cb "$ROOT/.src" "$ROOT/.whl" | tail -1 | cut -f1) / 1048576 ))
echo "wheels: $(ls "$ROOT/.whl" | wc -l) files, $(( $(du -sb "$ROOT/.whl" | cut -f1) / 1024 )) KiB;" \
  "sources $(( $(du -sb "$ROOT/.src" | cut -f1) / 1024 )) KiB; bundle ${total} MiB (limit ${LIMIT_MIB})"
[ "$total" -le $LIMIT_MIB ] || echo "WARNING: bundle over the ${LIMIT_MIB} MiB carry budget (docs/gpu.md)" >&2
