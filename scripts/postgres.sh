#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster: installs Debian's `postgresql` if it is
# missing, creates a cluster in a temporary directory (initdb as an unprivileged user), starts
# it on a Unix socket in that directory (no TCP port, so runs never collide), exports its
# connection string as SYNC_TEST_POSTGRES_URL, runs the command, and stops and deletes the
# cluster on any exit. The cluster runs with fsync off (fast tests); SYNC_POSTGRES_FSYNC=on
# keeps PostgreSQL's durable defaults (for benchmarks).
#
#   bash scripts/postgres.sh cargo test -p sync-runtime --features postgres --test server_conformance
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

bindir() {
  local initdb
  initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$initdb" ] && dirname "$initdb"
}

PG_BIN=$(bindir || true)
if [ -z "$PG_BIN" ]; then
  echo "== installing PostgreSQL (Debian's postgresql)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(bindir)
fi

# initdb refuses to run as root: run the cluster as `postgres` (the package's user) then.
if [ "$(id -u)" -eq 0 ]; then
  id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  as_cluster() { runuser -u postgres -- "$@"; }
else
  as_cluster() { "$@"; }
fi

PG_DIR=$(mktemp -d /tmp/sync-pg.XXXXXX)
chmod 755 "$PG_DIR"
mkdir "$PG_DIR/data" "$PG_DIR/socket"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$PG_DIR/data" "$PG_DIR/socket"

stop_cluster() {
  as_cluster "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_cluster EXIT

as_cluster "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
as_cluster "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/socket/log" -w -t 60 \
  -o "-c listen_addresses='' -k $PG_DIR/socket -c fsync=${SYNC_POSTGRES_FSYNC:-off} -c max_connections=200" start >/dev/null
echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $PG_DIR/socket"

export SYNC_TEST_POSTGRES_URL="host=$PG_DIR/socket user=postgres dbname=postgres"
"$@"
