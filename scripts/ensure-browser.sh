#!/usr/bin/env bash
# Make sure the browser the portal's end-to-end tests drive is installed: Debian's Chromium
# (/usr/bin/chromium). Installs Debian's `chromium` package when it is missing. Playwright (the Python
# package, a dev dependency in .venv) drives this browser directly and downloads no browser of its own.
# Idempotent: does nothing when the browser is there.
#
# Usage: scripts/ensure-browser.sh [--dry-run]
#   --dry-run  say what is missing and print the commands that would install it, change nothing
# Environment: TRELLIS_CHROMIUM  another Chromium executable the tests should use (skips the install)
set -euo pipefail

DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "ensure-browser: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

CHROMIUM=${TRELLIS_CHROMIUM:-/usr/bin/chromium}

have_chromium() { [ -x "$CHROMIUM" ] && [ ! -d "$CHROMIUM" ]; }

as_root() {
  if [ "$DRY_RUN" = 1 ]; then echo "would run: $*"; return 0; fi
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "ensure-browser: need root (or sudo) to run: $*" >&2; return 1
  fi
}

if have_chromium; then
  exit 0
fi

if [ -n "${TRELLIS_CHROMIUM:-}" ]; then
  echo "ensure-browser: TRELLIS_CHROMIUM is set to $CHROMIUM, which is not an executable file." >&2
  exit 1
fi

echo "ensure-browser: $CHROMIUM is missing; installing Debian's chromium package" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<EOF
ensure-browser: apt-get is not available, so the package cannot be installed here.
Install Chromium yourself, then either make it available as $CHROMIUM or set TRELLIS_CHROMIUM to
its executable: the portal's browser tests (tests/web/e2e) launch it headless through Playwright.
EOF
  exit 1
fi

# Package lists may be empty or stale on a new machine: refresh them before installing.
if ! as_root apt-get update -qq || \
   ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold chromium; then
  echo "ensure-browser: could not install chromium with apt-get (see the output above)." >&2
  exit 1
fi

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi

have_chromium || { echo "ensure-browser: installed chromium but $CHROMIUM is still missing" >&2; exit 1; }
echo "ensure-browser: installed chromium ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))" >&2
