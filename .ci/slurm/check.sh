#!/usr/bin/env bash
# Real SLURM check: install and start a one-node cluster, run the demo workflow locally and with
# `--profile slurm`, require identical results, show the jobs in sacct, stop every daemon.
# The SLURM run logs to a PostgreSQL-backed `mlflow server` this script starts on loopback
# (.ci/slurm/tracking_server.sh), as a cluster would (docs/workflow.md); the local run to SQLite.
# Usage: .ci/slurm/check.sh [snakemake targets...]   (default: the whole demo DAG)
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/slurm/env.sh
start=$(date +%s)
.ci/slurm/install.sh
TRACKING_DIR=$(mktemp -d /tmp/c123-tracking-XXXXXX)
trap '.ci/slurm/tracking_server.sh stop "$TRACKING_DIR"; .ci/slurm/stop.sh' EXIT
.ci/slurm/start.sh
echo "cluster ready after $(( $(date +%s) - start )) s"
TRACKING_URI=$(.ci/slurm/tracking_server.sh start "$TRACKING_DIR" "${TRACKING_PORT:-15000}" | tail -n 1)
echo "tracking server (PostgreSQL) at $TRACKING_URI after $(( $(date +%s) - start )) s"

export CONSISTENT123_SLURM_ACCOUNT=$SLURM_CI_ACCOUNT CONSISTENT123_SLURM_PARTITION=$SLURM_CI_PARTITION
ROOT=results/ci-slurm-check
rm -rf "$ROOT"
t0=$(date +%s)
snakemake --cores 2 --config results=$ROOT/local sweep=demo "$@"
t1=$(date +%s)
# Jobs run on this same node; 2 at a time like the local run.
# Every job on every node reads the server from the environment (it wins over tracking.uri).
MLFLOW_TRACKING_URI=$TRACKING_URI snakemake --profile slurm --jobs 2 --config results=$ROOT/slurm sweep=demo "$@"
t2=$(date +%s)
echo "local run $(( t1 - t0 )) s, slurm run $(( t2 - t1 )) s"

echo "--- sacct (accounting):"
sacct -a -X -n -S now-2hours -o JobID,JobName%40,Account,State,Elapsed | tail -n 40
failed=$(sacct -a -X -n -S now-2hours -o State | grep -vcE "COMPLETED|RUNNING|PENDING" || true)
[ "$failed" -eq 0 ] || { echo "sacct lists $failed job(s) that did not complete" >&2; exit 1; }
[ "$(sacct -a -X -n -S now-2hours -o State | grep -c COMPLETED)" -gt 0 ] || { echo "no SLURM job recorded by sacct" >&2; exit 1; }

python .ci/slurm/compare.py "$ROOT/local" "$ROOT/slurm"
python .ci/slurm/tree.py "$ROOT/slurm/demo/parent_run.json" "$TRACKING_URI"
echo "slurm check passed in $(( $(date +%s) - start )) s"
