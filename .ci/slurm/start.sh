#!/usr/bin/env bash
# Start a one-node SLURM cluster with accounting, as root, without systemd:
# munged, mariadb, slurmdbd, slurmctld -D, slurmd -D in the background, PIDs in $SLURM_CI_DIR/pids.
# slurm.conf goes to its DEFAULT path (/etc/slurm/slurm.conf): the Snakemake SLURM plugin drops
# SLURM_CONF inside jobs, so a config anywhere else is not found by the job's own srun.
set -euo pipefail
source "$(dirname "$0")/env.sh"
D=$SLURM_CI_DIR
mkdir -p "$D"/{state,spool,log,db} "$D/pids" /etc/slurm /run/munge /var/log/munge /var/lib/munge /etc/munge
HOST=$(hostname)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq "$t"); do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out waiting for $what" >&2; return 1
}

# --- munge (authentication between the daemons and the clients)
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key; chmod 700 /etc/munge
runuser -u munge -- munged --pid-file=/run/munge/munged.pid </dev/null >/dev/null 2>&1
cp /run/munge/munged.pid "$D/pids/munged"
wait_for 10 munge munge -n

# --- mariadb for slurmdbd (own data dir and socket under $D)
if [ ! -d "$D/db/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$D/db" --auth-root-authentication-method=socket >"$D/log/mariadb-install.log" 2>&1
fi
chown -R mysql:mysql "$D/db"
mariadbd --user=mysql --datadir="$D/db" --socket="$SLURM_CI_DB_SOCKET" --pid-file="$D/db/mariadbd.pid" \
  --skip-networking=0 --bind-address=127.0.0.1 --port=3306 --log-error="$D/db/mariadb.err" >/dev/null 2>&1 &
echo $! > "$D/pids/mariadbd"
wait_for 30 mariadb mariadb --socket="$SLURM_CI_DB_SOCKET" -e "select 1"
mariadb --socket="$SLURM_CI_DB_SOCKET" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

# --- slurmdbd
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/pids/slurmdbd.pid
StorageType=accounting_storage/mysql
# TCP, not the default socket path: this mariadb listens on its own socket
StorageHost=127.0.0.1
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmci
StoragePort=3306
CONF
chmod 600 /etc/slurm/slurmdbd.conf
# --- slurm.conf at the default path
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=$SLURM_CI_CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/pids/slurmctld.pid
SlurmdPidFile=$D/pids/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$SLURM_CI_PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

slurmdbd -D >"$D/log/slurmdbd.out" 2>&1 &
echo $! > "$D/pids/slurmdbd"
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$SLURM_CI_CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account "$SLURM_CI_ACCOUNT" cluster="$SLURM_CI_CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add user root account="$SLURM_CI_ACCOUNT" cluster="$SLURM_CI_CLUSTER" >/dev/null 2>&1 || true

slurmctld -D >"$D/log/slurmctld.out" 2>&1 &
echo $! > "$D/pids/slurmctld"
wait_for 30 slurmctld scontrol ping
slurmd -D >"$D/log/slurmd.out" 2>&1 &
echo $! > "$D/pids/slurmd"
wait_for 60 "node $HOST idle" bash -c "sinfo -h -N -o %T | grep -qx idle"
echo "slurm cluster up: node $HOST ($CPUS cpus, $MEM_MB MB), partition $SLURM_CI_PARTITION, account $SLURM_CI_ACCOUNT"
