"""What a reader sees on the rendered page: no cut-off lines, no process jargon, no test markers.

* no code-cell line and no stored text output line (``text/plain`` or a stream) wider than the page
  (88 characters, what the book theme shows without a sideways scroll bar);
* the package objects that chapters show with ``{literalinclude}`` obey the same width;
* reader prose (markdown cells of ``book/*.ipynb`` and ``book/*.md``) carries no words of the project's process
  ("CI", "nbval", "committed run", "the issue", "pytest", "TODO", ...);
* no ``# NBVAL`` comment in a code cell (nbval markers are cell tags), and the set-up cell is tagged
  ``remove-cell`` so that the HTML hides it (Colab still runs it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MARKDOWN_PAGES = sorted(BOOK.glob("*.md"))
PAGE_WIDTH = 88
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

per_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])

# Words of the project's process, not the reader's subject. A pattern is a regular expression matched
# case-sensitively unless it starts with (?i); word boundaries keep "CI" from matching "CIFAR" or "decision".
JARGON = {
    r"\bCI\b": "continuous integration is the project's machinery, not the reader's",
    r"(?i)\bnbval\b": "the notebook test plugin",
    r"(?i)\bpytest\b": "the test runner",
    r"(?i)\bcommitted (run|record|output|result)s?\b": "say what was measured, and where the record is",
    r"(?i)\bthe issue(?:'s)?\b": "an issue tracker's item",
    r"\bissue \d+\b": "an issue tracker's item",
    r"\bTODO\b|\bFIXME\b|\bXXX\b": "an unfinished note",
    r"(?i)\bset-up cell\b": "the hidden Colab cell",
    r"(?i)\bsync_notebooks\b|\bexecute_notebooks\b": "a maintainer's tool",
    r"\bNBVAL": "an nbval marker",
}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def reader_prose() -> list[tuple[str, str]]:
    """(where, text) for every markdown cell of the notebooks and every markdown page of the book."""
    found = [(p.name, p.read_text()) for p in MARKDOWN_PAGES]
    for path in NOTEBOOKS:
        for i, cell in enumerate(read(path).cells):
            if cell.cell_type == "markdown":
                found.append((f"{path.name} cell {i}", cell.source))
    return found


def output_lines(cell: nbformat.NotebookNode) -> list[str]:
    lines = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            lines += out.text.splitlines()
        elif "data" in out and "text/plain" in out.data and "image/png" not in out.data:
            lines += out.data["text/plain"].splitlines()
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Width
# ---------------------------------------------------------------------------------------------------------------


@per_notebook
def test_code_lines_fit_the_page(path: Path) -> None:
    wide = [
        f"cell {i}: {len(line)} chars: {line[:60]}..."
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > PAGE_WIDTH
    ]
    assert not wide, f"{path.name}: code lines wider than {PAGE_WIDTH}:\n" + "\n".join(wide)


@per_notebook
def test_output_lines_fit_the_page(path: Path) -> None:
    wide = [
        f"cell {i}: {len(line)} chars: {line[:60]}..."
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code"
        for line in output_lines(cell)
        if len(line) > PAGE_WIDTH
    ]
    assert not wide, f"{path.name}: output lines wider than {PAGE_WIDTH}:\n" + "\n".join(wide)


def included_objects() -> list[tuple[str, str, str]]:
    """(page, file, object) for every ``{literalinclude}`` with ``:pyobject:`` in the book."""
    pattern = re.compile(r"```\{literalinclude\}\s+(\S+)\s*\n:pyobject:\s*(\S+)")
    found = []
    for path in NOTEBOOKS:
        for cell in read(path).cells:
            if cell.cell_type == "markdown":
                found += [(path.name, f, obj) for f, obj in pattern.findall(cell.source)]
    return found


def object_source(file: Path, qualname: str) -> list[str]:
    """The source lines of a top-level function/class or a ``Class.method``, as Sphinx's pyobject finds it."""
    tree = ast.parse(file.read_text())
    lines = file.read_text().splitlines()
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next(
            (n for n in scope if isinstance(n, DEFINITIONS) and n.name == part),
            None,
        )
        if node is None:
            raise LookupError(f"{qualname} not found in {file}")
        scope = node.body
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return lines[start - 1 : node.end_lineno]


def test_included_package_objects_are_found() -> None:
    missing = []
    for page, file, obj in included_objects():
        try:
            object_source((BOOK / file).resolve(), obj)
        except (LookupError, FileNotFoundError) as err:
            missing.append(f"{page}: {err}")
    assert not missing, "\n".join(missing)


def test_included_package_lines_fit_the_page() -> None:
    offenders = []
    for page, file, obj in sorted(set(included_objects())):
        try:
            source = object_source((BOOK / file).resolve(), obj)
        except (LookupError, FileNotFoundError):
            continue  # reported by test_included_package_objects_are_found
        wide = sum(len(line) > PAGE_WIDTH for line in source)
        if wide:
            offenders.append(f"{page}: {file} {obj}: {wide} line(s) wider than {PAGE_WIDTH}")
    assert not offenders, "literalinclude'd objects with lines cut off on the page:\n" + "\n".join(offenders)


# ---------------------------------------------------------------------------------------------------------------
# Words and markers
# ---------------------------------------------------------------------------------------------------------------


def test_jargon_patterns_can_fail() -> None:
    """Each pattern catches the word it is for and leaves ordinary prose alone."""
    assert re.search(r"\bCI\b", "the quick profile used in CI")
    assert not re.search(r"\bCI\b", "CIFAR-10 and a decision")
    assert re.search(r"(?i)\bcommitted (run|record|output|result)s?\b", "the committed run")
    assert re.search(r"(?i)\bthe issue(?:'s)?\b", "the issue's target")
    assert not any(re.search(p, "an issue of memory, not of speed") for p in JARGON)


@pytest.mark.parametrize("pattern", sorted(JARGON))
def test_no_process_jargon_in_reader_prose(pattern: str) -> None:
    hits = [
        f"{where}: ...{text[max(0, m.start() - 40) : m.end() + 40]!r}..."
        for where, text in reader_prose()
        for m in re.finditer(pattern, text)
    ]
    assert not hits, f"{JARGON[pattern]} ({pattern}):\n" + "\n".join(hits)


@per_notebook
def test_no_nbval_comments_in_code(path: Path) -> None:
    marked = [
        i
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code" and re.search(r"#\s*NBVAL", cell.source, re.IGNORECASE)
    ]
    assert not marked, f"{path.name}: cells {marked} carry an nbval comment; use the cell tag instead"


@per_notebook
def test_setup_cell_is_hidden(path: Path) -> None:
    setup = [c for c in read(path).cells if "nlbook-setup" in c.metadata.get("tags", [])]
    assert len(setup) == 1, f"{path.name}: expected one set-up cell, found {len(setup)}"
    assert "remove-cell" in setup[0].metadata["tags"], f"{path.name}: the set-up cell must be tagged remove-cell"


@per_notebook
def test_glued_numbers_are_computed_in_the_page(path: Path) -> None:
    """Every ``{glue}`` a page's prose shows is glued by one of its own code cells (a number is never typed)."""
    nb = read(path)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    shown = set(re.findall(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`", prose))  # name, without a :format
    # glue("name", ...) or glue(f"name_{kind}", ...): an f-string's placeholders match any text
    names = re.findall(r"\bglue\(\s*(f?)[\"']([^\"']+)[\"']", code)
    patterns = [re.escape(n) if not f else re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(n)) for f, n in names]
    missing = sorted(name for name in shown if not any(re.fullmatch(pat, name) for pat in patterns))
    assert not missing, f"{path.name}: shown but never glued: {missing}"
