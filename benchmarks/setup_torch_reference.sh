#!/usr/bin/env bash
# Creates benchmarks/.venv-torch: the PyTorch/diffusers side of benchmarks/train_step.py.
#
#     bash benchmarks/setup_torch_reference.sh
#
# Python 3.11 on purpose: the CPU build of torch 2.13.0 on these machines is a Python 3.11
# wheel, and `pip install torch==2.13.0` takes it (a newer torch, or a torch for another
# Python, would be a CUDA build of several GB). Idempotent: an existing, working venv is
# reused. Set PYTHON311 to choose the interpreter.
set -euo pipefail

TORCH_VERSION="2.13.0"
DIFFUSERS_VERSION="0.42.1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${HERE}/.venv-torch"

find_python311() {
  local candidate
  for candidate in "${PYTHON311:-}" python3.11 \
      "$(pyenv root 2>/dev/null)/versions/3.11.7/bin/python3.11" \
      /root/.pyenv/versions/3.11.7/bin/python3.11 python3; do
    [[ -z "${candidate}" ]] && continue
    if "${candidate}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "${candidate}"
      return 0
    fi
  done
  return 1
}

if [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -c \
    "import torch, diffusers; assert torch.__version__.startswith('${TORCH_VERSION}')" \
    2>/dev/null; then
  echo "reusing ${VENV}"
else
  PY="$(find_python311)" || { echo "no Python 3.11 interpreter found (set PYTHON311)" >&2; exit 1; }
  echo "creating ${VENV} with ${PY} ($("${PY}" --version))"
  "${PY}" -m venv "${VENV}"
  "${VENV}/bin/python" -m pip install --quiet --upgrade pip
  # torch first and alone, so that diffusers' requirements never pull in another torch build.
  "${VENV}/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}"
  "${VENV}/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}" \
    "diffusers==${DIFFUSERS_VERSION}"
fi

"${VENV}/bin/python" -c \
  "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
