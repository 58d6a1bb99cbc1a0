#!/usr/bin/env bash
# Create the virtual environment and install the locked dependencies plus this project (editable).
# Uses uv when it is there (fast), plain venv + pip otherwise.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "switchyard needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if ! command -v uv >/dev/null 2>&1; then
    # uv is a single static binary on PyPI; install it for this user if pip allows.
    "$python" -m pip install --quiet --user uv 2>/dev/null || "$python" -m pip install --quiet uv 2>/dev/null || true
    export PATH="$HOME/.local/bin:$PATH"
fi

if command -v uv >/dev/null 2>&1; then
    [ -x "$venv/bin/python" ] || uv venv --quiet --python "$python" "$venv"
    VIRTUAL_ENV="$venv" uv pip sync --quiet requirements.lock
    VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps -e .
else
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet -r requirements.lock
    "$venv/bin/pip" install --quiet --no-deps -e .
fi
echo "installed the locked dependencies into $venv"
