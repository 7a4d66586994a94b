"""Capping what a notebook's outputs may weigh, in bytes, from the moment they arrive.

A kernel can send the grader far more than a notebook should hold: one line of hundreds of
megabytes, a flood of small prints or images, displays updated in place, widget state.
nbgrader's ``LimitOutput`` caps the *lines* of a stream once the notebook has run, so all of
it would first sit in the grading process's memory, then fill the autograded notebook, the
feedback page and the disk. ``CappedExecute`` (nbgrader's ``Execute``, used by autograde:
grader/nbgrader_config.py) caps instead as each message arrives: an output keeps at most
``max_output_bytes`` (text keeps its head), and once a notebook has sent ``max_notebook_bytes``
its later outputs give way to a one-line notice. Displays updated in place and widgets are not
kept at all. Any single message over ``MAX_MESSAGE_BYTES`` (course.py) is refused by ZeroMQ.

What decides a grade is never dropped, only shortened: nbgrader gives a test cell 0 points
for an error or a ``stderr`` output (and partial points for an ``execute_result`` number), so
a flood of output can never turn a failing test into a passing one; a result too big to keep
becomes an error (0 points), never a pass.
"""

from __future__ import annotations

import json

from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Int

from ..text import utf8_head

NOTICE = "[output removed by the grader: {why}]\n"


def weight(content) -> int:
    """About the bytes an output (or a message's content) holds."""
    return len(json.dumps(content, ensure_ascii=False, default=str).encode())


def decides_grade(output) -> bool:
    """Whether nbgrader reads this output to grade a test cell (``utils.determine_grade``)."""
    kind = output.get("output_type")
    return kind in ("error", "execute_result") or (kind == "stream" and output.get("name") == "stderr")


def notice(why: str) -> NotebookNode:
    """The line that stands for outputs the grader did not keep."""
    return new_output("stream", name="stdout", text=NOTICE.format(why=why))


def capped(output: NotebookNode, limit: int) -> NotebookNode:
    """``output`` if it weighs at most ``limit``; otherwise its shortened form, which grades
    as it did (an error stays an error, stderr stays stderr) or fails closed (a result too
    big to read as partial credit becomes an error)."""
    if weight(output) <= limit:
        return output
    why = f"over {limit // 1024} KiB"
    kind = output.get("output_type")
    if kind == "stream":
        text = utf8_head(output.get("text", ""), limit // 2)
        return new_output(
            "stream", name=output.get("name", "stdout"), text=text + "\n" + NOTICE.format(why=why)
        )
    if kind == "error":
        traceback = [utf8_head(line, limit // 8) for line in output.get("traceback", [])[-4:]]
        return new_output(
            "error",
            ename=utf8_head(str(output.get("ename", "")), 200),
            evalue=utf8_head(str(output.get("evalue", "")), limit // 4),
            traceback=[*traceback, NOTICE.format(why=why)],
        )
    if kind == "execute_result":  # nbgrader reads its number as partial credit: too big to read
        return new_output(
            "error",
            ename="OutputTooLarge",
            evalue=f"this cell's result was {why}: the grader cannot read it, and counts it as a failure",
            traceback=[NOTICE.format(why=why)],
        )
    return notice(f"an output {why}")


def keep(output, kept: list, received: int, max_output: int, max_notebook: int) -> int:
    """Append ``output``, capped to ``max_output``, to a cell's ``kept`` outputs, unless the
    notebook's outputs (``received`` bytes so far) are past ``max_notebook``: then only the
    first output of each kind that decides a grade is kept (nbgrader reads the first), and one
    notice stands for the rest. Returns the notebook's new total."""
    output = capped(output, max_output)
    received += weight(output)
    if received <= max_notebook or (
        decides_grade(output) and not any(_kind(o) == _kind(output) for o in kept)
    ):
        kept.append(output)
    elif not any(_is_notice(o) for o in kept):
        kept.append(notice(f"this notebook's outputs are over {max_notebook // 2**20} MiB"))
    return received


def _kind(output) -> tuple[str, str]:
    return output.get("output_type", ""), output.get("name", "")


def _is_notice(output) -> bool:
    return output.get("output_type") == "stream" and output.get("text", "").startswith(NOTICE[:20])


class CappedExecute(Execute):
    """nbgrader's ``Execute`` whose outputs are capped as they arrive (see the module)."""

    max_output_bytes = Int(64 * 1024, help="bytes one output may keep").tag(config=True)
    max_notebook_bytes = Int(2 * 2**20, help="bytes all outputs of a notebook may keep").tag(config=True)

    _received = 0  # bytes of outputs this notebook has sent so far (after capping each)

    def preprocess(self, nb, resources=None, km=None):
        self._received = 0
        nb, resources = super().preprocess(nb, resources, km=km)
        # Once more over what was kept: nbgrader adds the error of an execute reply itself.
        received = 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                kept: list = []
                for output in cell.outputs:
                    received = keep(output, kept, received, self.max_output_bytes, self.max_notebook_bytes)
                cell.outputs = kept
        return nb, resources

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and outs and outs[-1] is out:
            outs.pop()  # kept again below, capped, if the caps allow
            self._received = keep(out, outs, self._received, self.max_output_bytes, self.max_notebook_bytes)
        return out

    def _update_display_id(self, display_id, msg):
        """Displays updated in place (a progress bar) keep their first state: an update could
        grow an output the caps have already counted."""

    def handle_comm_msg(self, outs, msg, cell_index):
        """Widgets are not graded, and their state would grow without a cap: ignored."""
