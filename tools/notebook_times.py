"""Print how long each chapter notebook takes to execute, and flag the ones over budget.

    python tools/notebook_times.py                      # times recorded by the last `jupyter-book build`
    python tools/notebook_times.py --execute            # run every chapter now (quick profile, CPU) and time it
    python tools/notebook_times.py --execute book/03_nonlocal.ipynb --budget 90

Two sources of a time, both the wall time of one top-to-bottom run in a fresh kernel:

* **cache** (default): ``jupyter-book build`` executes the notebooks through jupyter-cache and records each
  run's ``execution_seconds`` in ``_build/.jupyter_cache``. A time is shown only when the cached run matches
  the notebook's *current* code (jupyter-cache hashes the code cells), so a stale time is never reported.
* **execute** (``--execute``): runs the notebooks now with nbclient, with the environment the committed outputs
  are made with (``NLBOOK_DATASET=digits NLBOOK_PROFILE=quick TQDM_DISABLE=1``, CPU only). Nothing is written
  back to the notebooks.

The budget (default 90 s, the quick profile's "about a minute per chapter on 2 CPU cores") is a guide for
authors, not a test: timings depend on the machine, so the exit status is non-zero only with ``--strict``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
# The same environment tools/execute_notebooks.py uses for the committed outputs.
QUICK_ENV = {"NLBOOK_DATASET": "digits", "NLBOOK_PROFILE": "quick", "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}


@dataclass
class Timing:
    """One notebook's execution time (``seconds is None`` when there is none to report)."""

    path: Path
    seconds: float | None
    source: str


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """Notebooks listed in ``_toc.yml``, in reading order (markdown pages such as the intro are skipped)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def pages(entries: list[dict]) -> list[str]:  # an entry's page, then its section pages
        return [p for e in entries for p in ([e["file"]] if "file" in e else []) + pages(e.get("sections", []))]

    for part in toc.get("parts", []):
        files += pages(part.get("chapters", []))
    files += pages(toc.get("chapters", []))
    paths = [root / f"{f.removesuffix('.ipynb')}.ipynb" for f in files]
    return [p for p in paths if p.exists()]


def cached_times(paths: list[Path], cache_dir: Path = CACHE) -> list[Timing]:
    """Execution times that the last book build recorded for the notebooks' current code."""
    if not cache_dir.is_dir():
        raise FileNotFoundError(f"no jupyter-cache at {cache_dir}: build the book first, or pass --execute")
    from jupyter_cache import get_cache  # a dependency of jupyter-book; imported here so --execute needs only nbclient

    cache = get_cache(str(cache_dir))
    timings = []
    for path in paths:
        try:
            record = cache.match_cache_file(str(path))
        except KeyError:
            timings.append(Timing(path, None, "not cached for the current code (rebuild the book)"))
            continue
        seconds = record.data.get("execution_seconds")
        when = record.created.strftime("%Y-%m-%d %H:%M")
        timings.append(Timing(path, seconds, f"book build, {when}"))
    return timings


def execute_time(path: Path, timeout: int = 900) -> Timing:
    """Run ``path`` top to bottom in a fresh kernel (quick profile, CPU) and return the wall time."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    old_env = {k: os.environ.get(k) for k in QUICK_ENV}
    os.environ.update(QUICK_ENV)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        t0 = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as err:
            last_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            return Timing(path, None, f"FAILED after {time.perf_counter() - t0:.1f} s: {last_line[:100]}")
        return Timing(path, time.perf_counter() - t0, "executed now (quick profile, CPU)")
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def format_table(timings: list[Timing], budget: float, root: Path = ROOT) -> str:
    """A plain-text table: notebook, seconds, over-budget flag, where the time came from."""
    rows = []
    for t in timings:
        name = str(t.path.relative_to(root)) if t.path.is_relative_to(root) else str(t.path)
        secs = "-" if t.seconds is None else f"{t.seconds:.1f}"
        flag = "OVER" if t.seconds is not None and t.seconds > budget else ""
        rows.append((name, secs, flag, t.source))
    known = [t.seconds for t in timings if t.seconds is not None]
    rows.append(("total", f"{sum(known):.1f}" if known else "-", "", f"{len(known)} of {len(timings)} notebooks"))
    header = ("notebook", "seconds", f">{budget:g}s", "source")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    parser.add_argument("--execute", action="store_true", help="run the notebooks now instead of reading the cache")
    parser.add_argument("--cache", type=Path, default=CACHE, help="jupyter-cache folder (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per notebook (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a notebook is over budget or failed")
    args = parser.parse_args(argv)

    paths = [p.resolve() for p in args.notebooks] or toc_notebooks()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if args.execute:
        timings = []
        for p in paths:
            timings.append(execute_time(p))
            print(f"{p.name}: {timings[-1].seconds or float('nan'):.1f} s", file=sys.stderr, flush=True)
    else:
        try:
            timings = cached_times(paths, args.cache)
        except FileNotFoundError as err:
            print(err, file=sys.stderr)
            return 2
    print(format_table(timings, args.budget))
    bad = [t for t in timings if t.seconds is None and t.source.startswith("FAILED")]
    bad += [t for t in timings if t.seconds is not None and t.seconds > args.budget]
    return 1 if (args.strict and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
