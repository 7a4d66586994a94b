"""Keeping the hidden tests out of the feedback students get.

nbgrader's ``ClearHiddenTests`` removes the ``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS``
region from a cell's *source*, but a traceback in the cell's *output* quotes the lines around
the failing one — hidden tests included (a NameError on the visible test shows the next
lines). ``ClearHiddenTestOutput`` runs before it in ``GenerateFeedback.preprocessors``
(grader/nbgrader_config.py) and removes every output line that quotes a hidden line.
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REMOVED = "    (hidden test lines removed)"


def hidden_lines(source: str) -> list[str]:
    """The code lines of a cell's hidden regions, markers included, stripped of blanks."""
    lines, inside = [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
        if inside and line.strip():
            lines.append(line.strip())
        if END in line:
            inside = False
    return lines


def _normal(text: str) -> str:
    """Without colour codes, repeated blanks and a trailing semicolon (IPython may drop it)."""
    return " ".join(ANSI.sub("", text).split()).rstrip(";").rstrip()


def _quotes(line: str, hidden: list[str]) -> bool:
    plain = _normal(line)
    return BEGIN in plain or END in plain or any(_normal(h) and _normal(h) in plain for h in hidden)


def scrub(text: str, hidden: list[str]) -> str:
    """``text`` without the lines that quote a hidden line (one marker line in their place)."""
    out, removed = [], False
    for line in text.split("\n"):
        if _quotes(line, hidden):
            if not removed:
                out.append(REMOVED)
            removed = True
        else:
            out.append(line)
            removed = False
    return "\n".join(out)


class ClearHiddenTestOutput(Preprocessor):
    """Remove quotations of hidden-test lines from the outputs of the cells that hold them."""

    enabled = Bool(True, help="nbconvert preprocessors are off unless enabled").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            return cell, resources
        hidden = hidden_lines(cell.source)
        for output in cell.get("outputs", []):
            if "traceback" in output:
                output["traceback"] = [scrub(frame, hidden) for frame in output["traceback"]]
            if isinstance(output.get("text"), str):
                output["text"] = scrub(output["text"], hidden)
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    output["data"][mime] = scrub(value, hidden)
        return cell, resources
