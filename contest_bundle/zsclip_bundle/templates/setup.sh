#!/usr/bin/env bash
# Install the bundled zsclip runtime from ./wheels only (never the network) into ./.venv,
# or into ./site when this Python cannot make a venv. Then check that the model loads.
# Exit codes: 0 ready, 1 failed (one line on stderr says why).
# Environment: PYTHON (default python3) picks the interpreter.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
TARGET="@PYTHON_VERSION@"

have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
    echo "setup.sh: $PYTHON does not run; set PYTHON=/path/to/python$TARGET" >&2; exit 1; }
if [ "$have" != "$TARGET" ]; then
    echo "setup.sh: this bundle's wheels are for Python $TARGET but $PYTHON is $have;" \
         "set PYTHON=/path/to/python$TARGET or rebuild with zsclip-bundle --python $have" >&2
    exit 1
fi

export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
pip_wheel="$(ls "$HERE"/wheels/pip-*.whl | head -n 1)"  # pip runs from its own wheel: no ensurepip needed
install=(install --no-index --find-links "$HERE/wheels" --only-binary=:all: --quiet "zsclip==@ZSCLIP_VERSION@")

rm -rf "$HERE/.venv" "$HERE/site"
if "$PYTHON" -m venv --without-pip "$HERE/.venv" >/dev/null 2>&1; then
    "$HERE/.venv/bin/python" "$pip_wheel/pip" "${install[@]}"
else
    rm -rf "$HERE/.venv"
    echo "setup.sh: no venv module; installing into $HERE/site instead" >&2
    "$PYTHON" "$pip_wheel/pip" "${install[@]}" --target "$HERE/site"
fi
exec "$HERE/predict.sh" --check
