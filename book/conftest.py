"""nbval settings for the chapters: what a checked cell's comparison leaves out.

A cell that glues a number for the prose (MyST-NB ``glue``) also emits an
``application/papermill.record/*`` output. Where myst-nb is not installed (Colab, the
version-check environments) the chapters' ``glue`` is a no-op and that output is
missing; it carries the value the cell's printed text already shows, so nbval need
not compare it.
"""

from __future__ import annotations

import pytest

GLUE_KINDS = ("text/plain", "text/html", "text/markdown", "text/latex", "image/png")
GLUE_MIMETYPES = tuple(f"application/papermill.record/{kind}" for kind in GLUE_KINDS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        notebook = item.parent
        skip = getattr(notebook, "skip_compare", None)
        if skip is not None and GLUE_MIMETYPES[0] not in skip:
            notebook.skip_compare = (*skip, *GLUE_MIMETYPES)
