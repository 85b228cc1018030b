#!/usr/bin/env bash
# Creates (or reuses) .venv/ at the repository root and installs diffssl_jax into it, editable,
# at the exact versions of requirements/lock.txt (a pip constraints file).
# Usage: bash scripts/bootstrap.sh [test]   ("test" also installs the test extras)
# Interpreter: the first Python >= 3.12 found (plain python3.13/python3.12, then pyenv's
# versions, then python3); jax >= 0.11 and flax 0.12 need 3.12, so 3.11 cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""; [ "${1:-}" = "test" ] && extras="[test]"
lock="requirements/lock.txt"

is_supported() {  # usable and >= 3.12
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
  local v cand
  for v in 3.13 3.12; do
    if command -v "python$v" >/dev/null 2>&1 && is_supported "python$v"; then
      command -v "python$v"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in 3.13 3.12; do
      cand=$(ls -d "$(pyenv root)"/versions/${v}*/bin/python${v} 2>/dev/null | sort -V | tail -1 || true)
      if [ -n "$cand" ] && is_supported "$cand"; then echo "$cand"; return; fi
    done
  fi
  if command -v python3 >/dev/null 2>&1 && is_supported python3; then
    command -v python3; return
  fi
  echo "bootstrap: no Python >= 3.12 found (jax >= 0.11 and flax 0.12 need it; 3.11 cannot" \
    "install them): install python3.12, or 'pyenv install 3.12'" >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  echo "bootstrap: creating .venv with $py ($("$py" --version 2>&1))"
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
else
  echo "bootstrap: reusing .venv ($(.venv/bin/python --version 2>&1))"
fi
if ! is_supported .venv/bin/python; then
  echo "bootstrap: .venv has $(.venv/bin/python --version 2>&1); remove .venv and rerun" >&2
  exit 1
fi
stamp=".venv/.diffssl_jax-installed${extras}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -c "$lock" -e ".${extras}"
  touch "$stamp"
fi
echo "bootstrap: ready (.venv/bin/python)"
