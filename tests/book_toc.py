"""The book's table of contents as the tests read it (shared by the hygiene and rendered-book tests)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pages(entries: list[dict]) -> list[str]:
    """Each entry's page followed by its section pages (``sections:``, any depth), in reading order."""
    names = []
    for entry in entries:
        if "file" in entry:
            names.append(entry["file"])
        names += _pages(entry.get("sections", []))
    return names


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Every page of ``_toc.yml`` in reading order, section pages included, as Sphinx docnames
    (``book/03_nonlocal``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names += _pages(part.get("chapters", []))
    names += _pages(toc.get("chapters", []))
    return [re.sub(r"\.(ipynb|md)$", "", n) for n in names]
