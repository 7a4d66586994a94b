"""Capping what a notebook's outputs may weigh, in bytes, before nbgrader saves it.

nbgrader's ``LimitOutput`` caps the *lines* of a stream; a cell that prints one line of
hundreds of megabytes (or a flood of images) passes it, and then fills the autograded
notebook, the feedback page and the disk. ``LimitOutputBytes`` runs right after it in
``Autograde.autograde_preprocessors`` (grader/nbgrader_config.py): each output keeps at most
``max_output_bytes`` (text keeps its head, anything else is dropped), and once a notebook's
outputs reach ``max_notebook_bytes`` every later output is replaced by a one-line notice.
Grading never reads outputs (points come from errors and the verifier), so nothing is lost.
"""

from __future__ import annotations

import json

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Int

NOTICE = "[output removed by the grader: {why}]\n"


def _weight(output) -> int:
    return len(json.dumps(output, ensure_ascii=False).encode())


class LimitOutputBytes(Preprocessor):
    enabled = Bool(True)  # nbconvert's preprocessors are off unless switched on
    max_output_bytes = Int(64 * 1024, help="bytes one output may keep").tag(config=True)
    max_notebook_bytes = Int(2 * 2**20, help="bytes all outputs of a notebook may keep").tag(config=True)

    def preprocess(self, nb, resources):
        total = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            kept = []
            for output in cell.get("outputs", []):
                output = self._capped(output)
                total += _weight(output)
                if total > self.max_notebook_bytes:
                    why = f"this notebook's outputs are over {self.max_notebook_bytes // 2**20} MiB"
                    kept.append(_notice(why))
                    break
                kept.append(output)
            cell.outputs = kept
        return nb, resources

    def _capped(self, output):
        if _weight(output) <= self.max_output_bytes:
            return output
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            head = text.encode()[: self.max_output_bytes // 2].decode("utf-8", "ignore")
            output["text"] = head + "\n" + NOTICE.format(why=f"over {self.max_output_bytes // 1024} KiB")
            return output
        return _notice(f"an output over {self.max_output_bytes // 1024} KiB")


def _notice(why: str):
    from nbformat.v4 import new_output

    return new_output("stream", name="stdout", text=NOTICE.format(why=why))
