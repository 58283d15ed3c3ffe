"""Repository hygiene: what a maintainer would otherwise catch by eye in review.

Policy checked here (CONTRIBUTING.md states it for contributors):

* notebooks carry only ``kernelspec``/``language_info`` metadata (no versions, widget or per-cell execution
  state), cells only ``tags``; no stored error output or traceback (errors the book shows are caught and
  printed); each notebook under 1.5 MB (figures as PNG at dpi 80); no tracked file over 1.5 MB at all;
* notebooks never define an ``nn.Module`` subclass (the book's code is the package's tested code);
* every ``book/*.ipynb`` is in ``_toc.yml`` and every ``_toc.yml`` entry exists; one ``#`` title per notebook;
* every ``{cite}`` key exists in ``book/references.bib`` and no key is defined twice;
* ``ruff check`` and ``ruff format --check`` are clean on ``nlbook/``, ``tests/``, ``benchmarks/``, ``tools/``
  and the notebooks;
* ``environment.yml`` and ``pyproject.toml`` declare the same packages with the same version bounds;
* every pattern in ``tests/nbval_sanitize.cfg`` compiles and rewrites what its comment promises.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from book_toc import toc_docnames
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
NB_IDS = [p.name for p in NOTEBOOKS]
MAX_BYTES = 1_500_000  # 1.5 MB: per notebook, and for any tracked file
LINT_PATHS = ["nlbook", "tests", "benchmarks", "tools"]

per_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def python_source(cell_source: str) -> str:
    """A code cell as plain Python: IPython magics and shell escapes become ``pass`` (same line count)."""
    return "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in cell_source.splitlines())


# ---------------------------------------------------------------------------------------------------------------
# Notebook metadata, outputs and size
# ---------------------------------------------------------------------------------------------------------------


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks under {BOOK}"


@per_notebook
def test_notebook_metadata_is_minimal(path: Path) -> None:
    nb = read(path)
    stray = sorted(set(nb.metadata) - {"kernelspec", "language_info"})
    assert not stray, f"{path.name}: notebook metadata besides kernelspec/language_info: {stray}"
    # Colab and nbclient both start the kernel this names
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    assert "version" not in nb.metadata.get("language_info", {}), f"{path.name}: language_info records a version"
    for i, cell in enumerate(nb.cells):
        extra = sorted(set(cell.metadata) - {"tags"})
        assert not extra, f"{path.name} cell {i}: cell metadata besides tags: {extra}"


@per_notebook
def test_no_stored_errors(path: Path) -> None:
    nb = read(path)
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", (
                f"{path.name} code cell {i}: stored error output {out.get('ename')}: {out.get('evalue')} "
                "(show an expected error with try/except and print)"
            )
            text = (
                out.get("text", "") if out.output_type == "stream" else str(out.get("data", {}).get("text/plain", ""))
            )
            assert "Traceback (most recent call last)" not in text, f"{path.name} code cell {i}: a traceback"


@per_notebook
def test_notebook_size(path: Path) -> None:
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size / 1e6:.2f} MB (limit 1.5 MB): save figures at dpi=80, fewer figures"


def test_no_large_tracked_files() -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    big = []
    for name in filter(None, files.decode().split("\0")):
        p = ROOT / name
        if p.is_file() and p.stat().st_size >= MAX_BYTES:
            big.append(f"{name} ({p.stat().st_size / 1e6:.1f} MB)")
    assert not big, f"tracked files of 1.5 MB or more (keep the repository small): {big}"
    tracked_build = [n for n in files.decode().split("\0") if n.startswith(("_build/", "data/", ".venv/"))]
    assert not tracked_build, f"build output or data tracked by git: {tracked_build[:10]}"


# Calls whose output depends on the machine (timings, throughput, memory, trained accuracy): a cell that makes
# them may run under nbval, but its output must not be compared (CONTRIBUTING.md, "never mark timings...").
VARIABLE_CALLS = re.compile(
    r"\b(fit|evaluate|measure|benchmark_model|peak_step_memory)\(|perf_counter|time\.time\(|timeit"
    r"|\.test_acc\b|images_per_s|wall_time|max_memory_allocated"
)


def checked_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    return [
        (i, c)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "nbval-check-output" in c.metadata.get("tags", [])
    ]


@per_notebook
def test_checked_cells_are_deterministic(path: Path) -> None:
    nb = read(path)
    checked = checked_cells(nb)
    assert checked, f"{path.name}: no cell is tagged nbval-check-output, so nbval compares nothing"
    flagged = [(i, m.group(0)) for i, c in checked for m in [VARIABLE_CALLS.search(c.source)] if m]
    assert not flagged, f"{path.name}: checked cells (index, call) that time, train or measure: {flagged}"


def test_variable_call_detector() -> None:
    assert VARIABLE_CALLS.search("t0 = time.perf_counter()")
    assert VARIABLE_CALLS.search("record = fit(model, data, cfg)")
    assert VARIABLE_CALLS.search("print(rec.test_acc)")
    assert not VARIABLE_CALLS.search("y = block(x); print(y.shape, count_parameters(block))")


# ---------------------------------------------------------------------------------------------------------------
# No model defined in a notebook
# ---------------------------------------------------------------------------------------------------------------


def _resolve(dotted: str, aliases: dict[str, str]) -> object | None:
    """The object ``dotted`` names after the notebook's imports, or None if it cannot be imported."""
    head, *rest = dotted.split(".")
    if head not in aliases:
        return None
    parts = aliases[head].split(".") + rest
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def module_subclasses(sources: list[str]) -> list[str]:
    """Names of the classes that ``sources`` (code cells, in order) define as ``torch.nn.Module`` subclasses.

    Bases are resolved through the cells' own imports (``nn.Module``, ``torch.nn.Sequential``, an imported
    nlbook model...) and through classes defined earlier in the cells.
    """
    import torch

    aliases: dict[str, str] = {}
    classes: dict[str, ast.ClassDef] = {}
    found: list[str] = []

    def is_module(base: ast.expr, seen: frozenset[str]) -> bool:
        dotted = ast.unparse(base)
        if dotted in classes and dotted not in seen:
            return any(is_module(b, seen | {dotted}) for b in classes[dotted].bases)
        obj = _resolve(dotted, aliases)
        return isinstance(obj, type) and issubclass(obj, torch.nn.Module)

    for source in sources:
        tree = ast.parse(python_source(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.ClassDef):
                classes[node.name] = node
                if any(is_module(b, frozenset({node.name})) for b in node.bases):
                    found.append(node.name)
    return found


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (["import torch.nn as nn\nclass A(nn.Module):\n    pass"], ["A"]),
        (["import torch\nclass A(torch.nn.Sequential):\n    pass"], ["A"]),
        (["from torch import nn", "class A(nn.Module): ...", "class B(A): ..."], ["A", "B"]),
        (["from nlbook.attention import MultiHeadSelfAttention2d\nclass M(MultiHeadSelfAttention2d): ..."], ["M"]),
        (["%matplotlib inline\nfrom dataclasses import dataclass\n@dataclass\nclass Row:\n    x: int"], []),
        (["import torch\nclass E(Exception): ..."], []),
    ],
    ids=["nn.Module", "torch.nn.Sequential", "indirect", "nlbook-model", "dataclass", "exception"],
)
def test_module_subclass_detector(sources: list[str], expected: list[str]) -> None:
    assert module_subclasses(sources) == expected


@per_notebook
def test_no_module_defined_in_notebook(path: Path) -> None:
    found = module_subclasses([c.source for c in code_cells(read(path))])
    assert not found, f"{path.name} defines nn.Module subclasses {found}: put models in nlbook/ and import them"


# ---------------------------------------------------------------------------------------------------------------
# Table of contents, titles, citations
# ---------------------------------------------------------------------------------------------------------------


def test_every_notebook_is_in_the_toc() -> None:
    listed = set(toc_docnames())
    missing = [p.name for p in NOTEBOOKS if f"book/{p.stem}" not in listed]
    assert not missing, f"notebooks not in _toc.yml (only_build_toc_files skips them silently): {missing}"


def test_every_toc_entry_exists() -> None:
    absent = [f for f in toc_docnames() if not any((ROOT / f"{f}{s}").exists() for s in (".ipynb", ".md"))]
    # Chapters are listed as soon as they are planned; a listed chapter that is missing breaks the build.
    assert not absent, f"_toc.yml lists pages that do not exist: {absent}"


@per_notebook
def test_one_title_per_notebook(path: Path) -> None:
    nb = read(path)
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path.name}: the first cell must be the # title"
    titles = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            if re.match(r"^\s*(```|~~~|:::)", line):
                fenced = not fenced
            elif not fenced and re.match(r"^#\s", line):
                titles.append(line)
    assert titles and nb.cells[0].source.lstrip().startswith("# "), f"{path.name}: cell 1 must start with '# '"
    assert len(titles) == 1, f"{path.name}: one level-1 heading per notebook, found {titles}"


def bib_keys() -> list[str]:
    return re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", (BOOK / "references.bib").read_text(), flags=re.MULTILINE)


def cited_keys() -> dict[str, set[str]]:
    """Citation keys used by each page: ``{cite}`` / ``{cite:t}`` / ``{cite:p}`` ... roles."""
    pages: dict[str, str] = {p.name: p.read_text() for p in BOOK.glob("*.md")}
    for p in NOTEBOOKS:
        pages[p.name] = "\n".join(c.source for c in read(p).cells if c.cell_type == "markdown")
    role = re.compile(r"\{cite(?::\w+)?\}`([^`]*)`")
    return {
        name: {k.strip() for m in role.findall(text) for k in m.split(",") if k.strip()} for name, text in pages.items()
    }


def test_bib_keys_unique() -> None:
    keys = bib_keys()
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert keys, "book/references.bib has no entries"
    assert not dupes, f"keys defined twice in book/references.bib: {dupes}"


def test_every_citation_is_in_the_bib() -> None:
    keys = set(bib_keys())
    unknown = {page: sorted(used - keys) for page, used in cited_keys().items() if used - keys}
    assert not unknown, f"cited keys missing from book/references.bib: {unknown}"


# ---------------------------------------------------------------------------------------------------------------
# Lint and format
# ---------------------------------------------------------------------------------------------------------------


def ruff_executable() -> str:
    exe = Path(sys.executable).parent / "ruff"
    found = str(exe) if exe.exists() else shutil.which("ruff")
    assert found, "ruff is a test dependency (pip install -e '.[test]'); it was not found next to Python or on PATH"
    return found


def lint_targets() -> list[str]:
    return [p for p in LINT_PATHS if (ROOT / p).exists()] + [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["ruff-check", "ruff-format"])
def test_ruff_clean(command: list[str]) -> None:
    proc = subprocess.run(
        [ruff_executable(), *command, "--no-cache", *lint_targets()], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"`ruff {' '.join(command)}` is not clean:\n{proc.stdout[-8000:]}{proc.stderr[-2000:]}"


# ---------------------------------------------------------------------------------------------------------------
# environment.yml agrees with pyproject.toml
# ---------------------------------------------------------------------------------------------------------------

CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def canonical(req: Requirement) -> tuple[str, str]:
    name = re.sub(r"[-_.]+", "-", req.name).lower()
    return CONDA_TO_PYPI.get(name, name), ",".join(sorted(str(s) for s in req.specifier))


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return dict(canonical(Requirement(r)) for r in reqs)


def environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs: list[str] = []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            specs += dep.get("pip", [])
        else:
            # conda's "name=1.2" / "name>=1.2" / "name 1.2"; only bounds written with >= < etc. are compared
            specs.append(re.sub(r"^([\w.-]+)\s*=(?!=)", r"\1==", dep.replace(" ", "")))
    reqs = dict(canonical(Requirement(s)) for s in specs)
    return {k: v for k, v in reqs.items() if k not in NOT_PACKAGES}


def test_environment_yml_matches_pyproject() -> None:
    if not (ROOT / "environment.yml").exists():
        pytest.fail("environment.yml is missing (conda users install from it)")
    py, env = pyproject_requirements(), environment_requirements()
    assert sorted(set(py) - set(env)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(env) - set(py)) == [], "in environment.yml but not pyproject.toml"
    differ = {name: (py[name], env[name]) for name in py if py[name] != env[name]}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


# ---------------------------------------------------------------------------------------------------------------
# nbval sanitising patterns
# ---------------------------------------------------------------------------------------------------------------


def sanitize_patterns() -> list[tuple[str, str]]:
    from nbval.plugin import get_sanitize_patterns  # the parser nbval itself uses

    return get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())


def sanitize(text: str) -> str:
    for regex, replace in sanitize_patterns():
        text = re.sub(regex, replace, text)
    return text


def test_sanitize_patterns_compile() -> None:
    patterns = sanitize_patterns()
    assert len(patterns) >= 6, f"nbval read only {len(patterns)} patterns from tests/nbval_sanitize.cfg"
    for regex, _ in patterns:
        re.compile(regex)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<function f at 0x7f3a2c1d4e50>", "<function f at 0xADDRESS>"),
        ("saved to /tmp/tmpab12cd/ckpt.pt.", "saved to TMPPATH"),
        ("/var/folders/x1/T/tmpq and more", "TMPPATH and more"),
        (
            "/usr/lib/python3/dist-packages/torch/nn/f.py:12: UserWarning: x",
            "SITE-PACKAGES/torch/nn/f.py:LINE: UserWarning: x",
        ),
        ("started 2026-11-25 16:55:32.123 ok", "started DATETIME ok"),
        ("1234.5 img/s and 12,345 images/s", "THROUGHPUT and THROUGHPUT"),
        (
            "took 12.3 ms, then 0.8 s, then 1.2s, 3 min, 45 µs",
            "took DURATION, then DURATION, then DURATION, DURATION, DURATION",
        ),
        ("ImageDataset('digits', classes=10, device=cpu)", "ImageDataset('digits', classes=10, device=DEVICE)"),
        (
            "tensor([1.], device='cuda:0') on device(type='cuda', index=0)",
            "tensor([1.], device=DEVICE) on device(DEVICE)",
        ),
        # what must survive: shapes, counts, error messages, plain numbers
        ("torch.Size([2, 64, 8, 8]) 3 samples 8 heads", "torch.Size([2, 64, 8, 8]) 3 samples 8 heads"),
        ("max abs error 1.2e-07, params 23,520", "max abs error 1.2e-07, params 23,520"),
        (
            "ValueError: expected 4-D input (B, C, H, W), got shape (3, 8, 8)",
            "ValueError: expected 4-D input (B, C, H, W), got shape (3, 8, 8)",
        ),
    ],
    ids=[
        "address",
        "tmp",
        "macos-tmp",
        "warning-path",
        "datetime",
        "throughput",
        "durations",
        "device",
        "device-repr",
        "shapes",
        "numbers",
        "errors",
    ],
)
def test_sanitize_examples(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


# ---------------------------------------------------------------------------------------------------------------
# CONTRIBUTING.md: how to add a chapter, in five steps
# ---------------------------------------------------------------------------------------------------------------


def test_contributing_has_five_steps_to_add_a_chapter() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = re.search(r"^## Add a chapter in five steps\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert section, "CONTRIBUTING.md has no '## Add a chapter in five steps' section"
    steps = re.findall(r"^(\d+)\. (.*)", section.group(1), flags=re.MULTILINE)
    assert [n for n, _ in steps] == ["1", "2", "3", "4", "5"], f"expected steps 1-5, found {[n for n, _ in steps]}"
    body = section.group(1)
    for what in ("nlbook/", "tests/test_", "book/", "_toc.yml", "references.bib"):
        assert what in body, f"the five steps do not mention {what}"
