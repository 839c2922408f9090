# Shared settings of the single-node CI cluster (sourced by start/stop/check).
export SLURM_CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
export SLURM_CI_CLUSTER=ci
export SLURM_CI_ACCOUNT=ci_account
export SLURM_CI_PARTITION=ci
export SLURM_CI_DB_SOCKET=$SLURM_CI_DIR/db/mysqld.sock
