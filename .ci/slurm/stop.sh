#!/usr/bin/env bash
# Stop every daemon start.sh started, by the PIDs it recorded (never by name).
set -uo pipefail
source "$(dirname "$0")/env.sh"
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  f=$SLURM_CI_DIR/pids/$name
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name ($pid)"
  fi
  rm -f "$f"
done
# Remove the configs start.sh wrote: with a slurm.conf naming a controller that is gone, every
# `scontrol` call (the SLURM plugin runs one whenever Snakemake starts) hangs ~10 s.
rm -f /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf
