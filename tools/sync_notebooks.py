"""Write (or check) the set-up cell that opens every chapter notebook.

    python tools/sync_notebooks.py            # insert/refresh the set-up cell in every book/*.ipynb
    python tools/sync_notebooks.py --check    # exit 1 and list problems; change nothing (used by the tests)
    python tools/sync_notebooks.py book/03_nonlocal.ipynb   # only these notebooks

The set-up cell is cell 1 (right after the title cell) and is tagged ``nlbook-setup``. Where ``nlbook`` is
importable (a local checkout, CI, the book build) it only prints ``nlbook <version>``; elsewhere (Colab) it
installs the package from the repository named in ``_config.yml`` — ``repository.url`` at
``repository.branch``, the same single setting the launch buttons read — and prints the version it got.

Which version gets installed: git can only pin what the repository names, and a notebook cannot contain the
commit it is committed in. So the cell installs ``repository.branch`` and compares the installed
``nlbook.__version__`` with the version in ``pyproject.toml`` that the notebook was written for, printing a
note when they differ. To pin a release exactly, set ``repository.branch`` to its tag (e.g. ``v0.1.0``) and
re-run this script: the launch buttons and the install then both point at that tag.

``--check`` also fails when a notebook is not listed in ``_toc.yml``, when its first cell is not a ``# Title``
markdown cell, or when a code cell reads files that the package install does not bring (relative paths such
as ``open('../data/x.csv')``: on Colab only the notebook itself is downloaded; data comes through
``nlbook.data``).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TAG = "nlbook-setup"
# nbval compares the outputs of cells with this tag (with --nbval-lax); a tag keeps the reader's cell clean.
CHECK_TAG = "nbval-check-output"
CELL_ID = "nlbook-setup"

TEMPLATE = """\
# Set-up: does nothing where nlbook is importable; elsewhere (e.g. Colab)
# installs the book's own version.
try:
    import nlbook
except ImportError:
    %pip install -q "nlbook @ git+{url}@{ref}"
    import importlib

    importlib.invalidate_caches()
    import nlbook
print("nlbook", nlbook.__version__)
if nlbook.__version__ != "{version}":
    print("note: written for nlbook {version}; results and APIs may differ")"""


def read_settings(root: Path = ROOT) -> dict[str, str]:
    """The repository URL and branch from ``_config.yml`` and the package version from ``pyproject.toml``."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config.get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not url or not branch:
        raise ValueError("_config.yml must set repository.url and repository.branch (the one repository setting)")
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return {"url": str(url).rstrip("/"), "ref": str(branch), "version": str(version)}


def setup_source(settings: dict[str, str]) -> str:
    """The exact source of the set-up cell for these settings."""
    return TEMPLATE.format(**settings)


def setup_cell(settings: dict[str, str]) -> nbformat.NotebookNode:
    """A fresh set-up cell whose stored output is what it prints where ``nlbook`` is importable."""
    cell = nbformat.v4.new_code_cell(source=setup_source(settings))
    cell.id = CELL_ID
    cell.execution_count = 1  # it is the first code cell; nbval skips cells with outputs but no count
    # remove-cell: the HTML book hides it (it matters only on Colab); the notebook keeps it.
    cell.metadata = {"tags": [TAG, CHECK_TAG, "remove-cell"]}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"nlbook {settings['version']}\n")]
    return cell


def _is_setup(cell: nbformat.NotebookNode) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def synced(nb: nbformat.NotebookNode, settings: dict[str, str]) -> nbformat.NotebookNode:
    """Return ``nb`` with exactly one set-up cell, at index 1, matching ``settings``; other cells untouched."""
    cells = [c for c in nb.cells if not _is_setup(c)]
    nb.cells = cells[:1] + [setup_cell(settings)] + cells[1:]
    return nb


def write_synced(path: Path, settings: dict[str, str]) -> bool:
    """Sync one notebook file in place; return whether it changed (a notebook already in sync is not rewritten)."""
    before = path.read_text()
    after = nbformat.writes(synced(nbformat.read(path, as_version=4), settings))
    after += "" if after.endswith("\n") else "\n"  # as nbformat.write does
    if after != before:
        path.write_text(after)
    return after != before


def _toc_files(root: Path) -> set[str]:
    """Every ``file:`` entry in ``_toc.yml`` (any nesting), without extension."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                found.add(str(Path(node["file"]).with_suffix("")))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    toc = root / "_toc.yml"
    walk(yaml.safe_load(toc.read_text()) if toc.exists() else {})
    return found


# IPython escapes (%magic, !shell) are not Python; blank them out before parsing a cell with `ast`.
_MAGIC = re.compile(r"^(\s*)[%!].*$", re.MULTILINE)
_READERS = {"open", "read_csv", "read_text", "read_bytes", "load", "loadtxt", "genfromtxt", "imread", "Path"}


def _outside_files(source: str, nb_dir: Path, root: Path) -> list[str]:
    """String literals in a code cell that name files the ``nlbook`` install would not bring along.

    Flags (a) any relative path that climbs out of the notebook (``../...``) or starts with ``./``,
    (b) a literal that names an existing file or folder of the checkout relative to the notebook or the root
    (e.g. ``data/cifar.npz``), and (c) a literal first argument to ``open``/``np.load``/``Path`` ... that is a
    relative path with a file extension.
    """
    try:
        tree = ast.parse(_MAGIC.sub(r"\1pass", source))
    except SyntaxError:
        return []
    problems: list[str] = []
    reader_args: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in _READERS:
                reader_args.add(id(node.args[0]))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        s = node.value.strip()
        if not s or "\n" in s or len(s) > 200 or "://" in s or s.startswith("/"):
            continue
        climbs = s.startswith(("../", "./", "..\\")) or s == ".."
        exists = any(part for part in s.split("/")) and "/" in s and ((nb_dir / s).exists() or (root / s).exists())
        opened = id(node) in reader_args and bool(re.search(r"\.[A-Za-z0-9]{1,5}$", s))
        if climbs or exists or opened:
            problems.append(s)
    return problems


def check(paths: list[Path], settings: dict[str, str], root: Path = ROOT) -> list[str]:
    """Everything wrong with these notebooks, as readable lines (empty when all is in sync)."""
    problems: list[str] = []
    want = setup_source(settings)
    toc = _toc_files(root)
    for path in paths:
        rel = path.resolve().relative_to(root.resolve())
        nb = nbformat.read(path, as_version=4)
        if str(rel.with_suffix("")) not in toc:
            problems.append(f"{rel}: not listed in _toc.yml")
        first = nb.cells[0] if nb.cells else None
        if first is None or first.cell_type != "markdown" or not first.source.lstrip().startswith("# "):
            problems.append(f"{rel}: cell 0 must be a markdown title cell starting with '# '")
        tagged = [i for i, c in enumerate(nb.cells) if _is_setup(c)]
        if tagged != [1]:
            problems.append(f"{rel}: expected exactly one set-up cell at index 1, found at {tagged} (run sync)")
        else:
            cell = nb.cells[1]
            if cell.cell_type != "code" or cell.source != want:
                problems.append(f"{rel}: set-up cell is out of sync with _config.yml/pyproject.toml (run sync)")
            for tag in (CHECK_TAG, "remove-cell"):
                if tag not in cell.metadata.get("tags", []):
                    problems.append(f"{rel}: set-up cell lacks the '{tag}' tag")
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and not _is_setup(cell):
                for s in _outside_files(cell.source, path.parent, root):
                    problems.append(f"{rel}: cell {i} reads {s!r}, which a package install does not bring")
    return problems


def notebooks(args: list[str], root: Path = ROOT) -> list[Path]:
    """The notebooks named on the command line, or every ``book/*.ipynb``."""
    return [Path(a) for a in args] if args else sorted((root / "book").glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to sync (default: every book/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="report problems and exit 1; write nothing")
    opts = parser.parse_args(argv)
    settings = read_settings()
    paths = notebooks(opts.notebooks)
    if opts.check:
        problems = check(paths, settings)
        print("\n".join(problems) if problems else f"{len(paths)} notebooks in sync with _config.yml")
        return 1 if problems else 0
    for path in paths:
        if write_synced(path, settings):
            print(f"{path}: set-up cell written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
