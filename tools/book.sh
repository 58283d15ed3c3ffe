#!/usr/bin/env bash
# Build the HTML book, executing every chapter notebook (offline data, quick profile, CPU unless told otherwise).
# Output: _build/html/index.html. Fails on any notebook error or Sphinx warning.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export NLBOOK_DATASET=${NLBOOK_DATASET:-digits} NLBOOK_PROFILE=${NLBOOK_PROFILE:-quick}
export TQDM_DISABLE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
# Notebook kernels draw figures with the inline backend only if MPLBACKEND is unset: with MPLBACKEND=Agg every
# figure is silently dropped from the book.
unset MPLBACKEND
.venv/bin/jupyter-book build . -W -n --keep-going
echo "The book is at $(pwd)/_build/html/index.html"
