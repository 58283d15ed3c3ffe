"""The book's table of contents as the tests read it (shared by the hygiene and rendered-book tests)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Every page of ``_toc.yml`` in reading order, as Sphinx docnames (``book/03_nonlocal``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names += [entry["file"] for entry in part.get("chapters", [])]
    names += [entry["file"] for entry in toc.get("chapters", [])]
    return [re.sub(r"\.(ipynb|md)$", "", n) for n in names]
