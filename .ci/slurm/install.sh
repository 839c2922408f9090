#!/usr/bin/env bash
# Install a single-node SLURM (controller, compute daemon, accounting) from Debian packages.
# Runs as root on a throw-away CI machine; no systemd needed afterwards (see start.sh).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null \
   && command -v munged >/dev/null && command -v mariadbd >/dev/null; then
  echo "slurm, munge and mariadb already installed"
  exit 0
fi
apt-get update -qq
# policy-rc.d stops the packages' post-install scripts from trying to start services.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
apt-get install -y -qq --no-install-recommends \
  slurm-wlm slurmdbd slurm-client munge mariadb-server >/dev/null
rm -f /usr/sbin/policy-rc.d
echo "installed: $(slurmctld -V) / $(mariadbd --version | head -c 60)"
