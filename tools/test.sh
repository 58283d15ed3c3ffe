#!/usr/bin/env bash
# Run every test: unit tests, nbval over every chapter notebook, and the rendered-book browser test
# (which builds the book first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export NLBOOK_DATASET=digits NLBOOK_PROFILE=quick TQDM_DISABLE=1 CUDA_VISIBLE_DEVICES=""
# Kernels (nbval, the book build) must keep the inline backend, or figures vanish; tests/conftest.py puts the
# pytest process itself on Agg.
unset MPLBACKEND
export PYDEVD_DISABLE_FILE_VALIDATION=1
.venv/bin/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-sanitize-with tests/nbval_sanitize.cfg tests book "$@"
