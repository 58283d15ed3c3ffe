"""Every exercise solution that contains code runs, and what its comments promise is what it computes.

The code blocks inside each ``{solution}`` directive of a chapter (fenced with backticks or tildes, or indented)
are executed in a fresh namespace that first runs the chapter's import cell — the first code cell after the
set-up cell, which ends with ``ctx = nlbook.setup(...)`` — with the offline data set and the quick profile. A
solution needs nothing else from the chapter: it defines what it uses. A top-level expression whose line ends
with a comment holding a Python literal (``torch.allclose(a, b)  # True``, ``count_parameters(m)  # 33312``)
must evaluate to that literal.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import tokenize
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

DIRECTIVE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})\{solution\}\s*(?P<label>\S+)[^\n]*\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S
)
FENCED = re.compile(r"^(?P<fence>`{3,}|~{3,})(?:python|ipython3?)?\s*\n(?P<code>.*?)^(?P=fence)\s*$", re.M | re.S)


def indented_blocks(body: str) -> list[str]:
    """CommonMark indented code blocks: runs of lines indented by 4+ spaces that follow a blank line."""
    blocks, current, previous_blank = [], [], True
    for line in body.splitlines():
        if line.startswith("    ") and (current or previous_blank):
            current.append(line[4:])
        elif current and not line.strip():
            current.append("")
        else:
            if current:
                blocks.append("\n".join(current).strip("\n"))
                current = []
        previous_blank = not line.strip()
    if current:
        blocks.append("\n".join(current).strip("\n"))
    return blocks


def solution_code(markdown: str) -> list[tuple[str, str]]:
    """(label, code) for every code block inside a ``{solution}`` directive of a markdown cell."""
    found = []
    for sol in DIRECTIVE.finditer(markdown):
        body = sol.group("body")
        blocks = [m.group("code") for m in FENCED.finditer(body)]
        rest = FENCED.sub("", body)
        blocks += indented_blocks(rest)
        found += [(sol.group("label"), code) for code in blocks if code.strip()]
    return found


def import_cell(nb: nbformat.NotebookNode) -> str:
    cells = [c for c in nb.cells if c.cell_type == "code" and "nlbook-setup" not in c.metadata.get("tags", [])]
    assert cells and "nlbook.setup(" in cells[0].source, "the first code cell after the set-up cell must import"
    return cells[0].source


def collect() -> list:
    params = []
    for path in sorted(BOOK.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        counts: dict[str, int] = {}
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for label, code in solution_code(cell.source):
                counts[label] = counts.get(label, 0) + 1
                params.append(pytest.param(path, code, id=f"{label}-{counts[label]}"))
    return params


SOLUTIONS = collect()


def literal_comments(code: str) -> dict[int, object]:
    """Line number -> the literal a trailing comment states, for comments that are Python literals."""
    stated = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            with contextlib.suppress(ValueError, SyntaxError):
                stated[tok.start[0]] = ast.literal_eval(tok.string.lstrip("#").strip())
    return stated


def run_checked(code: str, namespace: dict) -> list[str]:
    """Execute ``code``; return a message for each commented literal that its expression does not equal."""
    tree = ast.parse(code)
    stated = literal_comments(code)
    wrong = []
    for node in tree.body:
        module = ast.Module(body=[node], type_ignores=[])
        if isinstance(node, ast.Expr) and node.end_lineno in stated:
            value = eval(compile(ast.Expression(node.value), "<solution>", "eval"), namespace)
            if value != stated[node.end_lineno]:
                said = stated[node.end_lineno]
                wrong.append(f"line {node.lineno}: {ast.unparse(node.value)} is {value!r}, comment says {said!r}")
        else:
            exec(compile(module, "<solution>", "exec"), namespace)
    return wrong


def test_solutions_are_found() -> None:
    """The extraction sees the book's solutions (a parser that finds none would make every test vacuous)."""
    labels = {p.id.rsplit("-", 1)[0] for p in SOLUTIONS}
    assert len(labels) >= 8, f"only {sorted(labels)} have code"
    sample = "````{solution} x\n:class: dropdown\ntext\n\n    a = 1\n    b = 2\n\n```python\nc = 3\n```\n````\n"
    assert sorted(code for _, code in solution_code(sample)) == ["a = 1\nb = 2", "c = 3\n"]


def test_literal_comments_can_fail() -> None:
    assert run_checked("1 + 1  # 2", {}) == []
    assert run_checked("1 + 1  # 3", {}) != []


@pytest.mark.parametrize(("path", "code"), SOLUTIONS)
def test_solution_runs(path: Path, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLBOOK_DATASET", "digits")
    monkeypatch.setenv("NLBOOK_PROFILE", "quick")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": "__solution__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(import_cell(nb), f"{path.name}: import cell", "exec"), namespace)
        wrong = run_checked(code, namespace)
    plt.close("all")
    assert not wrong, f"{path.name}: the solution's comments do not match what it computes:\n" + "\n".join(wrong)
