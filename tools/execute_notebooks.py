"""Execute chapter notebooks in place the way the committed outputs are made, and tidy their metadata.

    python tools/execute_notebooks.py book/03_nonlocal.ipynb [more.ipynb ...]   # or no argument: all chapters

Runs each notebook top to bottom in a fresh kernel with ``NLBOOK_DATASET=digits NLBOOK_PROFILE=quick``,
no progress bars and the CPU only (the committed outputs are what nbval compares), prints the wall time,
and strips metadata that differs between machines (execution counts are renumbered, kernel/widget state
dropped) so diffs stay about content.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
ENV = {"NLBOOK_DATASET": "digits", "NLBOOK_PROFILE": "quick", "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}
KEEP_NB_METADATA = ("kernelspec", "language_info")


def tidy(nb: nbformat.NotebookNode) -> None:
    """Drop per-machine metadata; keep the outputs."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags",)}
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                out.get("metadata", {}).clear() if isinstance(out.get("metadata"), dict) else None


def execute(path: Path, timeout: int = 900) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ.update(ENV)
    os.environ.pop("MPLBACKEND", None)  # kernels draw inline only without it; with Agg figures are dropped
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    tidy(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "book").glob("[0-9a]*.ipynb"))
    for p in paths:
        print(f"{p}: {execute(p):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
