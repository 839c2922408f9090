#!/usr/bin/env bash
# Real SLURM check: install and start a one-node cluster, run the demo workflow locally and with
# `--profile slurm`, require identical results, show the jobs in sacct, stop every daemon.
# Usage: .ci/slurm/check.sh [snakemake targets...]   (default: the whole demo DAG)
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/slurm/env.sh
start=$(date +%s)
.ci/slurm/install.sh
trap '.ci/slurm/stop.sh' EXIT
.ci/slurm/start.sh
echo "cluster ready after $(( $(date +%s) - start )) s"

export CONSISTENT123_SLURM_ACCOUNT=$SLURM_CI_ACCOUNT CONSISTENT123_SLURM_PARTITION=$SLURM_CI_PARTITION
ROOT=results/ci-slurm-check
rm -rf "$ROOT"
t0=$(date +%s)
snakemake --cores 2 --config results=$ROOT/local sweep=demo "$@"
t1=$(date +%s)
# Jobs run on this same node; 2 at a time like the local run.
snakemake --profile slurm --jobs 2 --config results=$ROOT/slurm sweep=demo "$@"
t2=$(date +%s)
echo "local run $(( t1 - t0 )) s, slurm run $(( t2 - t1 )) s"

echo "--- sacct (accounting):"
sacct -a -X -n -S now-2hours -o JobID,JobName%40,Account,State,Elapsed | tail -n 40
failed=$(sacct -a -X -n -S now-2hours -o State | grep -vcE "COMPLETED|RUNNING|PENDING" || true)
[ "$failed" -eq 0 ] || { echo "sacct lists $failed job(s) that did not complete" >&2; exit 1; }
[ "$(sacct -a -X -n -S now-2hours -o State | grep -c COMPLETED)" -gt 0 ] || { echo "no SLURM job recorded by sacct" >&2; exit 1; }

python .ci/slurm/compare.py "$ROOT/local" "$ROOT/slurm"
echo "slurm check passed in $(( $(date +%s) - start )) s"
