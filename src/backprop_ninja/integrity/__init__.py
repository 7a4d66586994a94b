"""Static integrity scan of a submitted notebook: autograd, monkeypatching, dynamic tricks.

The scan reads the submission's code cells as text and walks their syntax trees; it never
runs them. It complements the out-of-kernel verifier (``backprop_ninja.verify``), which is
the authority on whether an answer is right: the scan explains *why* an answer is not
trusted, in one line the student can act on, and takes away the points it affects.

Modules, by job: ``submission`` (reading and classifying a submission), ``rules`` and
``allowlist`` (what is looked for), ``scope`` and ``visitor`` (the scan of one cell, with its
``imports`` checks), ``scan`` (a whole notebook), ``impact`` (which tests a finding voids),
``findings`` (what is reported).

Public API (stable — the grading pipeline relies on it)::

    scan_notebook(submitted_path, source_path=None) -> list[Finding]
    affected_tests(findings, notebook_name) -> dict[str, list[Finding]]   # test grade_id → findings

    Finding(cell: str,                 # answer grade_id, "added cell #k", or "notebook"
            line: int,                 # 1-based line in that cell (0: the whole cell/notebook)
            kind: str,                 # one of KINDS
            message: str,              # one line for the student
            functions: tuple[str, ...],  # the answer functions whose tests it voids
            whole_notebook: bool)      # True: every graded test of the notebook is void

    KINDS = ("autograd", "monkeypatch", "dynamic", "unknown", "forbidden_import", "syntax")

``source_path`` is the instructor's notebook (default ``solutions/backprop_ninja/<name>``):
it says which cells nbgrader restores from the source (locked, read-only and test cells)
and so never run as the student wrote them, and which unlocked cells are still exactly the
instructor's text. Those are not scanned; every other code cell is:

* answer cells (nbgrader ``solution``) — for all kinds;
* cells the student added or edited — for monkeypatching, dynamic tricks and syntax only.
  They may import what they like (``os``/``sys`` only for harmless reads such as
  ``os.environ.get`` or ``sys.version``) and may call autograd, as the lecture does to
  compare a manual gradient with PyTorch's: the verifier runs answer cells only, so nothing
  in an added cell can reach a grade except by changing the kernel, which is what is checked.

Which tests a finding voids: monkeypatch and dynamic findings void every graded test of the
notebook (the kernel can no longer be trusted); autograd and forbidden_import findings
void the tests of the answer functions that contain them or call them (module-level code
voids every function its cell defines); a syntax error voids the functions its answer cell
was meant to define. In notebook 4, ``test_training`` follows ``manual_backward``.

What it does not catch: the scan is an inspection of text, not a proof. Code that
obtains a forbidden object without naming it in any way this module recognises can slip
through; that is why the verifier also disables autograd in its own process, rejects
outputs that carry an autograd graph, and compares results where student code never runs.
"""

from __future__ import annotations

from ..course import DEPENDENT_TESTS
from ..text import one_line
from .allowlist import known_answer_attributes
from .findings import KINDS, Finding
from .impact import affected_tests, graded_test_ids, summary, top_level_definitions
from .scan import scan_answer_source, scan_cells, scan_notebook, scan_submission, unreadable
from .submission import (
    CodeCell,
    Submission,
    SubmissionError,
    classify_cells,
    default_source_path,
    load_submission,
    read_notebook_json,
    read_submission,
)

__all__ = [
    "DEPENDENT_TESTS",
    "KINDS",
    "CodeCell",
    "Finding",
    "Submission",
    "SubmissionError",
    "affected_tests",
    "classify_cells",
    "default_source_path",
    "graded_test_ids",
    "known_answer_attributes",
    "load_submission",
    "one_line",
    "read_notebook_json",
    "read_submission",
    "scan_answer_source",
    "scan_cells",
    "scan_notebook",
    "scan_submission",
    "summary",
    "top_level_definitions",
    "unreadable",
]
