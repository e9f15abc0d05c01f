#!/usr/bin/env bash
# Developer entry point. Creates .venv and installs the pinned requirements on first use.
#
#   ./dev.sh demo          run both functions against the bundled local emulators
#   ./dev.sh test [ARGS]   run the whole test suite (ARGS go to pytest)
#   ./dev.sh check         ruff (lint and format) and mypy --strict
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV=.venv

ensure_venv() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "dev.sh: $PYTHON is $("$PYTHON" --version 2>&1); Python 3.11 or newer is required." >&2
    echo "dev.sh: set PYTHON=/path/to/python3.11 and try again." >&2
    exit 2
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "dev.sh: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when a requirements file changed since the last install.
  local stamp="$VENV/.requirements.sha256" wanted
  wanted=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "dev.sh: installing requirements-dev.txt into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$wanted" >"$stamp"
  fi
}

# checkov pins versions of pycep-parser and packaging that clash with the app's, so the infra
# scan gets a virtual environment of its own. tests/test_infra.py runs .venv-infra/bin/checkov.
ensure_infra_venv() {
  local stamp=.venv-infra/.requirements.sha256 wanted
  [[ -x .venv-infra/bin/python ]] || "$PYTHON" -m venv .venv-infra
  wanted=$(sha256sum requirements-infra.txt | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "dev.sh: installing requirements-infra.txt into .venv-infra" >&2
    .venv-infra/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
    echo "$wanted" >"$stamp"
  fi
}

# Azurite, the Azure Storage emulator that the tests and the demo start, comes from npm at the
# version pinned in package-lock.json. Reinstall only when the lock file changed.
ensure_node_modules() {
  if ! command -v npm >/dev/null; then
    echo "dev.sh: npm is required to install Azurite (package.json); install Node.js 20 or newer." >&2
    exit 2
  fi
  local stamp=node_modules/.package-lock.sha256 wanted
  wanted=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ ! -x node_modules/.bin/azurite || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "dev.sh: installing package-lock.json into node_modules" >&2
    npm ci --no-audit --no-fund
    echo "$wanted" >"$stamp"
  fi
}

command="${1:-}"
[[ $# -gt 0 ]] && shift
case "$command" in
  demo)
    ensure_venv
    ensure_node_modules
    exec "$VENV/bin/python" scripts/demo.py "$@"
    ;;
  test)
    ensure_venv
    ensure_infra_venv
    ensure_node_modules
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  check)
    ensure_venv
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    ;;
  *)
    echo "usage: ./dev.sh demo | test [pytest args] | check" >&2
    exit 2
    ;;
esac
