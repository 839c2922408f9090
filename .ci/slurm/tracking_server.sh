#!/usr/bin/env bash
# A cluster's tracking server, as docs/workflow.md starts it on a login node: `mlflow server` on
# a PostgreSQL database with its own artifact store, both on loopback ports of this machine.
#   .ci/slurm/tracking_server.sh start DIR PORT   (prints the tracking URI on its last line)
#   .ci/slurm/tracking_server.sh stop DIR         (by the PIDs start recorded; safe to repeat)
# PostgreSQL comes from the Debian packages, its data folder is DIR/pgdata (initdb as postgres).
set -euo pipefail
cmd=$1 dir=$2
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop() {
  if [ -s "$dir/mlflow.pid" ]; then
    pid=$(cat "$dir/mlflow.pid")
    # The server's own process group (setsid below): its gunicorn/uvicorn workers go with it.
    kill -- -"$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 -- -"$pid" 2>/dev/null || true
    rm -f "$dir/mlflow.pid"
    echo "stopped mlflow server ($pid)"
  fi
  if [ -s "$dir/pgdata/postmaster.pid" ]; then
    as_postgres "$(cat "$dir/pgbin")/pg_ctl" -D "$dir/pgdata" -m fast -w stop >/dev/null && echo "stopped postgresql"
  fi
}

start() {
  port=$3 pgport=$(( $3 + 1 ))
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get install -y -q postgresql >/dev/null
  fi
  python -c "import psycopg2" 2>/dev/null || pip install -q -e ".[server]"
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  mkdir -p "$dir/socket" "$dir/artifacts"
  touch "$dir/postgresql.log"
  echo "$pgbin" > "$dir/pgbin"
  if [ ! -s "$dir/pgdata/PG_VERSION" ]; then
    mkdir -p "$dir/pgdata"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pgdata" "$dir/socket" "$dir/postgresql.log" && chmod 755 "$dir"
    as_postgres "$pgbin/initdb" -D "$dir/pgdata" -U postgres -A trust >/dev/null
  fi
  as_postgres "$pgbin/pg_ctl" -D "$dir/pgdata" -l "$dir/postgresql.log" -w \
    -o "-p $pgport -k $dir/socket -c listen_addresses=127.0.0.1" start >/dev/null
  as_postgres "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='mlflow'" \
    | grep -q 1 || as_postgres "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres mlflow
  setsid mlflow server --backend-store-uri "postgresql://postgres@127.0.0.1:$pgport/mlflow" \
    --artifacts-destination "$dir/artifacts" --host 127.0.0.1 --port "$port" >"$dir/mlflow.log" 2>&1 &
  echo $! > "$dir/mlflow.pid"
  for _ in $(seq 240); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { echo "http://127.0.0.1:$port"; return 0; }
    kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$dir/mlflow.log" >&2
  echo "mlflow server did not start (log: $dir/mlflow.log)" >&2
  return 1
}

case $cmd in
  start) start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
