"""Where the course is published, carried everywhere it is written (``make release`` runs
this first): ``course.COURSE_REPOSITORY_URL`` and ``course.COURSE_HUB_URL`` →

* the README's table of notebooks, between its two ``notebooks`` markers: an "Open in Colab"
  badge and an nbgitpuller link (for a hub without nbgrader's exchange) per notebook;
* the Colab install cell of every solution notebook (``make release`` then copies it into the
  student notebooks): the package source it pip-installs.

``python -m backprop_ninja.maintainer.distribution`` rewrites what differs and names it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..course import (
    INSTALL_CELL_ID,
    INSTALL_SOURCE_VARIABLE,
    NOTEBOOKS,
    PACKAGE_SOURCE,
    REPO_ROOT,
    SOLUTIONS_DIR,
    colab_url,
    nbgitpuller_url,
)

README = REPO_ROOT / "README.md"
BEGIN, END = "<!-- notebooks: written by make release from course.py -->", "<!-- /notebooks -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
SOURCE_LINE = re.compile(rf'os\.environ\.get\("{INSTALL_SOURCE_VARIABLE}", "[^"]*"\)')


def readme_table() -> str:
    """The README's table: each notebook with its Colab badge and its nbgitpuller link."""
    rows = ["| notebook | open in Colab | on your JupyterHub (nbgitpuller) |", "|---|---|---|"]
    for notebook in NOTEBOOKS:
        number, _, words = notebook.partition("_")
        badge = f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook)})"
        rows.append(
            f"| {number} · {words.replace('_', ' ')} | {badge} | [open]({nbgitpuller_url(notebook)}) |"
        )
    return "\n".join(rows)


def with_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by ``readme_table()``."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + readme_table() + "\n" + readme[end:]


def with_source(cell_source: str) -> str:
    """An install cell's source with the configured package source."""
    return SOURCE_LINE.sub(f'os.environ.get("{INSTALL_SOURCE_VARIABLE}", "{PACKAGE_SOURCE}")', cell_source)


def update(readme: Path = README, solutions: Path = SOLUTIONS_DIR) -> list[Path]:
    """Rewrite what differs from the configuration; return the files changed."""
    import nbformat

    changed = []
    text = readme.read_text(encoding="utf-8")
    if with_table(text) != text:
        readme.write_text(with_table(text), encoding="utf-8")
        changed.append(readme)
    for notebook in NOTEBOOKS:
        path = solutions / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == INSTALL_CELL_ID]
        if cells and with_source(cells[0].source) != cells[0].source:
            cells[0].source = with_source(cells[0].source)
            nbformat.write(nb, path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in update():
        print(f"rewritten from course.py: {path.relative_to(REPO_ROOT)}")
    sys.exit(0)
