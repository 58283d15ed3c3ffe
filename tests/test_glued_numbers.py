"""Numbers in the book's prose come from cells: a result typed into markdown is a defect.

A result (an accuracy, a time, a ratio, a memory size) that a reader sees in prose must be inserted with
MyST-NB's ``{glue:text}`` / ``{glue}`` roles from the executed cell or the committed record, so that the sentence
holds for whatever numbers the build produced. This test scans every markdown cell of every chapter for
result-looking numbers — a number followed by ``%``, ``×`` (a ratio, not a size like 3×3), a time or a memory
unit — outside glue roles, code, math and citations. Constants that are not results (a chance level, a bound
derived in the text, a paper's reported value with its citation) are allow-listed below, each with its reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))

UNIT = (
    r"%|per\s?cent|×(?!\s*\d)|(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b|[KMG]i?B\b"
    r"|img/s|images/s|points?\b|pp\b|FLOPs?\b|GFLOPs?\b"
)
RESULT = re.compile(rf"(?<![\w.\-/])(\d[\d,]*(?:\.\d+)?)\s?(?:{UNIT})")

# (notebook stem, exact text of the match) -> why it is not a result. Keep this list short.
ALLOWED: dict[tuple[str, str], str] = {
    ("07_long_range", "75 %"): "the upper bound derived in the text (one image in four must be wrong)",
    ("06_comparison", "10 %"): "chance level for ten classes",
    ("appendix_b_measuring", "4 MiB"): "sizes of the tensors the memory probe allocates (inputs, not results)",
    ("appendix_b_measuring", "1 MiB"): "sizes of the tensors the memory probe allocates (inputs, not results)",
    ("appendix_b_measuring", "2 MiB"): "sizes of the tensors the memory probe allocates (inputs, not results)",
    ("appendix_b_measuring", "5 MiB"): "the peak those allocations must give, by construction",
    (
        "appendix_a_scaling_out",
        "150 MB",
    ): "CIFAR-10's size in memory (50,000 × 3 × 32 × 32 bytes), a property of the data",
    ("05_hybrid", "10 %"): "chance level for ten classes",
    ("*", "2 FLOPs"): "the convention: 2 FLOPs per multiply-add",
}


def prose(source: str) -> str:
    """Markdown without what may carry numbers legitimately: glue roles, code, math, citations, links."""
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " ", source)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r":::.*?:::", lambda m: m.group(0) if "{exercise}" in m.group(0) else m.group(0), text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = re.sub(r"\{cite(?::\w+)?\}`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)|https?://\S+", " ", text)
    return text


def unglued(text: str) -> list[str]:
    return [m.group(0).strip() for m in RESULT.finditer(prose(text))]


def literature_value(text: str, match: str) -> bool:
    """A value reported by a paper, cited in the same sentence, is a literature value, not our result."""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if match in prose(sentence) and re.search(r"\{cite(?::\w+)?\}`", sentence):
            return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_unglued_result_in_prose(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for match in unglued(cell.source):
            allowed = (path.stem, match) in ALLOWED or ("*", match) in ALLOWED
            if allowed or literature_value(cell.source, match):
                continue
            found.append(f"cell {i}: {match!r}")
    assert not found, (
        f"{path.name}: result-looking numbers typed into prose (glue them from a cell with myst_nb.glue, "
        f"or allow-list a constant in {__file__} with its reason): {found}"
    )


def test_scanner_finds_typed_results_and_skips_glued_ones() -> None:
    assert unglued("The ResNet reaches 97.2% after 4 epochs, 3.1× faster, in 12 s using 95 MiB.") == [
        "97.2%",
        "3.1×",
        "12 s",
        "95 MiB",
    ]
    assert unglued("It reaches {glue:text}`acc:.1f` %, with 3×3 kernels on a 32×32 image, `x = 5 %`.") == []
    assert unglued("$p = 0.5\\%$ and {cite}`he2016resnet`") == []
    assert literature_value("ViT-B/16 reaches 98.1 % on CIFAR-10 {cite}`dosovitskiy2021vit`.", "98.1 %")
    assert not literature_value("Ours reaches 98.1 %. See {cite}`dosovitskiy2021vit`.", "98.1 %")
