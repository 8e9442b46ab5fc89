#!/usr/bin/env bash
# Creates or updates the project's Python virtualenv at .venv/ from tests/python/requirements.txt
# (every line pinned with ==), idempotently: .venv/.requirements.sha256 records the hash of the
# requirements and of the interpreter they were installed for, and a run that finds the same
# hash does nothing. Uses the first CPython 3.11+ found as `python3` (pyenv's on the developers'
# machines, Debian's elsewhere); installs python3-venv through apt when `python3 -m venv` is
# unavailable. Usage: bash scripts/venv.sh (from anywhere); then .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=tests/python/requirements.txt
VENV=.venv
STAMP=$VENV/.requirements.sha256

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  declare -F apt_ensure >/dev/null || source scripts/setup.sh
  apt_ensure python3
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "venv: $PYTHON is $("$PYTHON" --version 2>&1); the test suite needs CPython 3.11 or later" >&2
  exit 1
fi

# What the virtualenv must match: the requirements and the interpreter's version and path.
want=$( { cat "$REQUIREMENTS"; "$PYTHON" -c 'import sys; print(sys.version, sys.executable)'; } \
  | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  exit 0
fi

# A virtualenv made by another interpreter is rebuilt rather than patched.
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "venv: $VENV is broken (its interpreter does not start); recreating it" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  # Debian splits venv and ensurepip into python3-venv.
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    declare -F apt_ensure >/dev/null || source scripts/setup.sh
    apt_ensure python3-venv
  fi
  echo "venv: creating $VENV with $("$PYTHON" --version 2>&1)" >&2
  "$PYTHON" -m venv "$VENV"
fi

echo "venv: installing $REQUIREMENTS into $VENV" >&2
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  -r "$REQUIREMENTS"
echo "$want" > "$STAMP"
