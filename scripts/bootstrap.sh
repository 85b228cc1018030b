#!/usr/bin/env bash
# Creates (or reuses) .venv/ at the repository root and installs diffssl_jax into it.
# Usage: bash scripts/bootstrap.sh [test]   ("test" also installs the test extras)
# Interpreter: the first Python >= 3.12 found (plain command, then pyenv), else python3 >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""; [ "${1:-}" = "test" ] && extras="[test]"

find_python() {
  local v cand
  for v in 3.13 3.12; do
    if command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' >/dev/null 2>&1; then
      command -v "python$v"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in 3.12 3.13; do
      cand=$(ls -d "$(pyenv root)"/versions/${v}*/bin/python${v} 2>/dev/null | sort -V | tail -1 || true)
      if [ -n "$cand" ] && "$cand" -c '' >/dev/null 2>&1; then echo "$cand"; return; fi
    done
  fi
  if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    command -v python3; return
  fi
  echo "no Python >= 3.11 found: install python3.12 (or pyenv install 3.12)" >&2; exit 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  echo "bootstrap: creating .venv with $py ($("$py" --version 2>&1))"
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
else
  echo "bootstrap: reusing .venv ($(.venv/bin/python --version 2>&1))"
fi
stamp=".venv/.diffssl_jax-installed${extras}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
echo "bootstrap: ready (.venv/bin/python)"
