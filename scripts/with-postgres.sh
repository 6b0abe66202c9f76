#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server (PG_TEST_URL set) when the server binaries are installed;
# without them the command runs as is and the PostgreSQL tests are skipped (with CI=true they fail instead).
# PG_BIN: the directory of the server binaries (default: the newest under /usr/lib/postgresql).
set -uo pipefail
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [[ -n "${PG_TEST_URL:-}" ]]; then
  exec "$@"
fi
if [[ -z "${PG_BIN}" || ! -x "${PG_BIN}/postgres" ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "with-postgres.sh: no PostgreSQL server binaries (install the postgresql package): CI cannot skip its tests" >&2
    exit 1
  fi
  echo "with-postgres.sh: no PostgreSQL server binaries: the PostgreSQL tests are skipped" >&2
  exec "$@"
fi
PG_DIR=$(mktemp -d /tmp/adaptbot-pg.XXXXXX)
# a free port, so that two test runs on one machine do not meet on one server
PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then  # initdb refuses to run as root
  chown -R postgres:postgres "$PG_DIR" 2>/dev/null || { useradd -r postgres 2>/dev/null; chown -R postgres "$PG_DIR"; }
  RUN_AS=(runuser -u postgres --)
fi
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U adaptbot --auth=trust >/dev/null
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" -l "$PG_DIR/log" -w start >/dev/null \
  || { echo "PostgreSQL did not start:"; tail -5 "$PG_DIR/log"; exit 1; }
export PG_TEST_URL="postgresql+asyncpg://adaptbot@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') for the tests at 127.0.0.1:$PG_PORT"
"$@"
status=$?
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null
rm -rf "$PG_DIR"
exit $status
