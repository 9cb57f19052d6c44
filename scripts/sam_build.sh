#!/usr/bin/env bash
# Builds the stack with `sam build` on this machine (no container): the Makefiles fetch arm64 /
# Python 3.13 wheels with the pip of this project's virtualenv, whatever python3 is on PATH.
# Extra arguments go to `sam build` (e.g. --build-dir /tmp/build).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_bin="${VIRTUAL_ENV:-$root/.venv}/bin"
if [[ ! -x "$venv_bin/sam" ]]; then
    echo "sam not found in $venv_bin: create the virtualenv first (pip install -r requirements-dev.txt)" >&2
    exit 1
fi

export PATH="$venv_bin:$PATH"
export PYTHON="${PYTHON:-$venv_bin/python}"
export SAM_CLI_TELEMETRY=0
# The Makefiles add hash-based bytecode made by the Lambda runtime's Python (3.13), found on PATH or
# under pyenv; without one the artifacts ship source only (and say so).
if [[ -z "${LAMBDA_PYTHON:-}" ]]; then
    found="$("$root/scripts/find_python.sh" 2>/dev/null || true)"
    if [[ -n "$found" ]] && "$found" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)'; then
        export LAMBDA_PYTHON="$found"
    fi
fi

cd "$root"
exec sam build --template-file template.yaml "$@"
