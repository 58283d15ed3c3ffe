#!/usr/bin/env bash
# Create .venv (Python 3.11) and install nlbook with its book and test extras, pinned by requirements/lock.txt.
# Idempotent: re-installs only when pyproject.toml or the lock file changed. Used by tools/book.sh and tools/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.nlbook-installed
want=$(cat pyproject.toml requirements/lock.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # the lock pins torch 2.14.1 / torchvision 0.29.1 and every other package CI uses
  .venv/bin/python -m pip install --quiet -c requirements/lock.txt -e ".[book,test]"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import nlbook, torch; print('nlbook', nlbook.__version__, '| torch', torch.__version__)"
