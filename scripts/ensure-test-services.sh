#!/usr/bin/env bash
# Make sure the server binaries the test suite runs are installed: PostgreSQL (initdb, pg_ctl,
# postgres) and redis-server. Installs Debian's `postgresql` / `redis-server` packages when missing.
# The tests start their own throwaway servers from these binaries (tests/services.py); this script
# never starts, stops or enables the system services. Idempotent: does nothing when all is there.
#
# Usage: scripts/ensure-test-services.sh [--dry-run]
#   --dry-run  say what is missing and print the commands that would install it, change nothing
# Environment: TRELLIS_PG_BINDIR  a folder holding initdb, pg_ctl and postgres (skips the search)
set -euo pipefail

DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "ensure-test-services: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

PG_ROOT=/usr/lib/postgresql   # Debian keeps server binaries here, off PATH: $PG_ROOT/<version>/bin

has_pg_bindir() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

have_postgres() {
  if [ -n "${TRELLIS_PG_BINDIR:-}" ]; then has_pg_bindir "$TRELLIS_PG_BINDIR"; return; fi
  local dir
  for dir in "$PG_ROOT"/*/bin; do has_pg_bindir "$dir" && return 0; done
  return 1
}

# bash's `command -v` also reports a non-executable file, so test the path it gives.
have_redis() {
  local path
  { path=$(command -v redis-server 2>/dev/null) && [ -x "$path" ]; } || [ -x /usr/bin/redis-server ]
}

as_root() {
  if [ "$DRY_RUN" = 1 ]; then echo "would run: $*"; return 0; fi
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "ensure-test-services: need root (or sudo) to run: $*" >&2; return 1
  fi
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "ensure-test-services: missing test server binaries; installing: ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<EOF
ensure-test-services: apt-get is not available, so the packages cannot be installed here.
Install them yourself (${missing[*]}): the tests need the PostgreSQL server binaries initdb, pg_ctl
and postgres (searched in $PG_ROOT/*/bin, or set TRELLIS_PG_BINDIR) and redis-server on PATH.
EOF
  exit 1
fi

# Package lists may be empty or stale on a new machine: refresh them before installing.
if ! as_root apt-get update -qq || \
   ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"; then
  echo "ensure-test-services: could not install ${missing[*]} with apt-get (see the output above)." >&2
  exit 1
fi

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi

have_postgres || {
  echo "ensure-test-services: installed postgresql but found no initdb/pg_ctl/postgres in $PG_ROOT/*/bin" \
    "${TRELLIS_PG_BINDIR:+or $TRELLIS_PG_BINDIR}" >&2
  exit 1
}
have_redis || { echo "ensure-test-services: installed redis-server but it is not on PATH" >&2; exit 1; }
echo "ensure-test-services: installed ${missing[*]}" >&2
