"""The class report's figures (``class_report.py``), as matplotlib Figures and as SVG.

Every chart says what its colours mean in a legend, and its count axes (students) carry
whole-number ticks only: a class has 3 students, never 2.5. The Figures are returned before
they become SVG, so that a test can read their legends and ticks instead of pixels.
"""

from __future__ import annotations

import base64
import io

from ..course import NOTEBOOKS
from .status import MISSING
from .table import short_name

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")  # one per notebook, in order
TOTAL_COLOUR = "#555555"


def colour_of(column: str) -> str:
    """A notebook's colour in every chart ("total": grey)."""
    return COLOURS[NOTEBOOKS.index(column) % len(COLOURS)] if column in NOTEBOOKS else TOTAL_COLOUR


def whole_numbers(axis) -> None:
    """Ticks on whole numbers only, for an axis that counts (students, points)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def svg_image(figure) -> str:
    """The figure as an ``<img>`` holding its SVG: no file, no network."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue().encode()).decode()
    return f"<img alt='figure' src='data:image/svg+xml;base64,{data}'>"


def score_histograms_figure(report):
    """One histogram per notebook and one of the totals: students per score."""
    from matplotlib.figure import Figure

    columns = [*NOTEBOOKS, "total"]
    figure = Figure(figsize=(3 * len(columns), 2.8))
    for i, column in enumerate(columns):
        axes = figure.add_subplot(1, len(columns), i + 1)
        total = column == "total"
        values = [
            r.total if total else (r.points[column] or 0.0)
            for r in report.rows
            if total or r.states[column] != MISSING
        ]
        top = (report.rows[0].max_total if total else report.rows[0].max_points[column]) if report.rows else 1
        label = f"{len(values)} student{'s' if len(values) != 1 else ''}" + ("" if total else " submitted")
        axes.hist(
            values, bins=min(20, int(top) + 1), range=(0, top + 1e-9), color=colour_of(column), label=label
        )
        axes.set_title(short_name(column) if not total else "total", fontsize=10)
        axes.set_xlabel("points")
        axes.set_xlim(0, top)
        axes.set_ylim(0, max(1, axes.get_ylim()[1]))  # an empty one too: 0 to 1 student
        whole_numbers(axes.xaxis)
        whole_numbers(axes.yaxis)
        axes.legend(fontsize=7, loc="best")
    figure.axes[0].set_ylabel("students")
    return figure


def pass_rate_figure(report):
    """The pass rate of every test along the backward pass, coloured by notebook."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(max(6, 0.28 * len(report.tests)), 3.4))
    axes = figure.add_subplot(1, 1, 1)
    names = [t.name for t in report.tests]
    axes.bar(
        range(len(names)),
        [100 * t.pass_rate for t in report.tests],
        color=[colour_of(t.notebook) for t in report.tests],
    )
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% of students passing")
    axes.set_title("pass rate per test, along the backward pass", fontsize=10)
    shown = [nb for nb in NOTEBOOKS if any(t.notebook == nb for t in report.tests)]
    handles = [Patch(color=colour_of(nb), label=short_name(nb)) for nb in shown]
    axes.legend(
        handles=handles,
        title="notebook",
        fontsize=7,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    return figure
