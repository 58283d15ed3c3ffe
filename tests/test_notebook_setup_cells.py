"""Every chapter notebook opens with the set-up cell that ``tools/sync_notebooks.py`` writes from ``_config.yml``.

The repository's own notebooks must be in sync (``--check``); the tool itself is exercised on a throw-away
copy of the configuration so that its insertion, idempotence and failure modes are tested too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

import nlbook

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)


def test_repository_notebooks_are_in_sync() -> None:
    paths = sync.notebooks([], ROOT)
    problems = sync.check(paths, sync.read_settings(ROOT), ROOT)
    assert not problems, "run `python tools/sync_notebooks.py`:\n" + "\n".join(problems)


def test_single_repository_setting_feeds_launch_buttons() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    settings = sync.read_settings(ROOT)
    assert settings["url"].startswith("https://github.com/")
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert settings["version"] == nlbook.__version__
    # Colab opens only .ipynb: every chapter in the toc that exists must be a notebook (intro/references are .md)
    for entry in sync._toc_files(ROOT):
        path = ROOT / entry
        if path.with_suffix(".md").exists():
            assert path.name in ("intro", "glossary", "references"), f"{entry} is markdown; chapters must be .ipynb"


# --------------------------------------------------------------------------------------------------------------
# the tool on a scratch copy


def _scratch(tmp_path: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(6 * 7)", execution_count=3)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# 1. CNN basics"), code, nbformat.v4.new_markdown_cell("## More")]
    nbformat.write(nb, tmp_path / "book" / "01_cnn_basics.ipynb")
    return tmp_path


def _sync(root: Path) -> list[Path]:
    paths = sync.notebooks([], root)
    settings = sync.read_settings(root)
    for p in paths:
        sync.write_synced(p, settings)
    return paths


def test_sync_inserts_once_keeps_outputs_and_is_idempotent(tmp_path: Path) -> None:
    root = _scratch(tmp_path)
    nb_path = root / "book" / "01_cnn_basics.ipynb"
    settings = sync.read_settings(root)
    assert sync.check([nb_path], settings, root), "a notebook without set-up cell must fail the check"
    _sync(root)
    first = nb_path.read_bytes()
    _sync(root)
    assert nb_path.read_bytes() == first, "running the sync twice must change nothing"
    nb = nbformat.read(nb_path, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "markdown"]
    assert sync.TAG in nb.cells[1].metadata["tags"] and sync.CHECK_TAG in nb.cells[1].metadata["tags"]
    assert nb.cells[2].outputs[0]["text"] == "42\n" and nb.cells[2].execution_count == 3
    assert sync.check([nb_path], settings, root) == []


def test_check_fails_when_config_changes_and_sync_follows(tmp_path: Path) -> None:
    root = _scratch(tmp_path)
    nb_path = root / "book" / "01_cnn_basics.ipynb"
    _sync(root)
    config = (root / "_config.yml").read_text()
    (root / "_config.yml").write_text(config.replace("https://github.com/nlbook/nlbook", "https://github.com/fork/nl"))
    settings = sync.read_settings(root)
    assert any("out of sync" in p for p in sync.check([nb_path], settings, root))
    _sync(root)
    assert sync.check([nb_path], settings, root) == []
    nb = nbformat.read(nb_path, as_version=4)
    assert [c for c in nb.cells if sync.TAG in c.metadata.get("tags", [])] == [nb.cells[1]]
    assert "git+https://github.com/fork/nl@main" in nb.cells[1].source


def test_check_fails_on_missing_toc_entry_and_outside_files(tmp_path: Path) -> None:
    root = _scratch(tmp_path)
    (root / "data").mkdir()
    (root / "data" / "labels.csv").write_text("0\n")
    stray = nbformat.v4.new_notebook()
    stray.cells = [nbformat.v4.new_markdown_cell("# X. Not in the toc")]
    nbformat.write(stray, root / "book" / "99_stray.ipynb")
    nb_path = root / "book" / "01_cnn_basics.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('rows = open("../data/labels.csv").read()'))
    nb.cells.append(nbformat.v4.new_code_cell('import numpy as np\n\nx = np.load("data/labels.csv")'))
    nb.cells.append(nbformat.v4.new_code_cell('%matplotlib inline\nw = torch.load("weights.pt")'))
    nbformat.write(nb, nb_path)
    _sync(root)
    problems = sync.check(sync.notebooks([], root), sync.read_settings(root), root)
    assert any("99_stray" in p and "_toc.yml" in p for p in problems)
    assert any("'../data/labels.csv'" in p for p in problems)
    assert any("'data/labels.csv'" in p for p in problems)
    assert any("'weights.pt'" in p for p in problems)
    # data that comes through the package is fine
    ok = nbformat.v4.new_code_cell('from nlbook import data\n\nprint("see ../ later", "x/y")')
    assert sync._outside_files(ok.source, root / "book", root) == []


def test_check_fails_without_title_cell(tmp_path: Path) -> None:
    root = _scratch(tmp_path)
    nb_path = root / "book" / "01_cnn_basics.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0] = nbformat.v4.new_markdown_cell("Some text first")
    nbformat.write(nb, nb_path)
    _sync(root)
    assert any("title cell" in p for p in sync.check([nb_path], sync.read_settings(root), root))


# --------------------------------------------------------------------------------------------------------------
# what the cell does when run (IPython-transformed, as a kernel would)


def _run_cell(source: str, magic_calls: list[tuple[str, str]]) -> str:
    code = TransformerManager().transform_cell(source)

    class FakeIPython:
        def run_line_magic(self, name: str, line: str) -> None:
            magic_calls.append((name, line))
            sys.modules.pop("nlbook", None)  # "installing" makes the real package importable again

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<setup-cell>", "exec"), {"get_ipython": FakeIPython})  # noqa: S102
    return out.getvalue()


def test_setup_cell_does_nothing_when_importable() -> None:
    calls: list[tuple[str, str]] = []
    out = _run_cell(sync.setup_source(sync.read_settings(ROOT)), calls)
    assert calls == []
    assert out == f"nlbook {nlbook.__version__}\n"


def test_setup_cell_installs_from_the_configured_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sync.read_settings(ROOT)
    monkeypatch.setitem(sys.modules, "nlbook", None)  # `import nlbook` now raises ImportError, as on Colab
    calls: list[tuple[str, str]] = []
    out = _run_cell(sync.setup_source(settings), calls)
    assert calls == [("pip", f'install -q "nlbook @ git+{settings["url"]}@{settings["ref"]}"')]
    assert out.startswith(f"nlbook {nlbook.__version__}\n")


def test_setup_cell_warns_on_a_different_version() -> None:
    settings = dict(sync.read_settings(ROOT), version="9.9.9")
    out = _run_cell(sync.setup_source(settings), [])
    assert "written for nlbook 9.9.9" in out
