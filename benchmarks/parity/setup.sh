#!/usr/bin/env bash
# Creates the parity harness's own virtualenv with RecBole 1.2.1 beside the project's code.
# RecBole is never a dependency of hymoerec: it lives only in this environment.
#   benchmarks/parity/setup.sh [VENV]      (default: benchmarks/parity/.venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import recbole, hymoerec" 2>/dev/null; then
    echo "parity venv ready: $venv"
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# The CPU torch build of the dev install; RecBole's own pins as known to work with it.
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet recbole==1.2.1 numpy==1.26.4 pandas==2.1.4 scipy==1.11.4 \
    'setuptools<70' 'scikit-learn<1.6'
# hymoerec itself, for the exporter and the evaluator (no extras needed).
"$venv/bin/pip" install --quiet --no-deps -e "$root"
"$venv/bin/pip" install --quiet pyyaml tqdm safetensors filelock
"$venv/bin/python" -c "import recbole, hymoerec; print('parity venv ready:', recbole.__version__)"
