#!/usr/bin/env bash
# Set up .venv-bench and run the whole benchmark. It rewrites part of docs/benchmarks.md.
#
#   bench/run.sh            the whole benchmark, about 15 minutes on 2 cores
#   bench/run.sh --quick    small sizes, to try the harness; leaves the page alone
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-bench

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "bench/run.sh: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when a requirements file changed since the last install.
stamp="$VENV/.requirements.sha256"
wanted=$(cat requirements.txt bench/requirements.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  echo "bench/run.sh: installing bench/requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
  echo "$wanted" >"$stamp"
fi

# Without these, azure-identity could pick another credential source or probe the instance
# metadata address. The harness passes each contender only the emulators' variables.
for name in $(compgen -e); do
  case "$name" in
    AZURE_* | MSI_* | IDENTITY_* | IMDS_* | MSAL_*) unset "$name" ;;
  esac
done

exec "$VENV/bin/python" bench/run.py "$@"
