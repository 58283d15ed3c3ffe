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
# Fashion-MNIST, the records' data set, from Debian's package where apt is available (offline afterwards);
# elsewhere nlbook.data downloads it on first use or says how to get it.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo -n"
  if ! { $sudo_ apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { $sudo_ apt-get update -qq >/dev/null 2>&1 && $sudo_ apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; }; then
    echo "note: could not install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist);" \
      "tests that need Fashion-MNIST are skipped" >&2
  fi
fi
.venv/bin/python -c "import nlbook, torch; print('nlbook', nlbook.__version__, '| torch', torch.__version__)"
