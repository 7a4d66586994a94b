"""Build the demo class that `make grade` autogrades, and check its grades.

    python grader/make_demo_class.py [--class-dir grader/work/demo]           # build
    python grader/make_demo_class.py --check [--class-dir grader/work/demo]   # compare with DEMO

Every submission is made here from the course's own files, never edited by hand: the released
student notebooks (notebooks/backprop_ninja/) with their answer cells filled from the
solutions (solutions/backprop_ninja/), then one student's mistake applied by exact text
replacement. A replacement that no longer applies (the solutions changed) stops the build,
so the demo cannot silently become meaningless.

``DEMO`` below is the single table of students, what each did, the points each notebook
must get and the notes it must carry: the test of the pipeline asserts against it.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from backprop_ninja.cells import grade_id, is_answer
from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading.classdir import Course

NB1, NB2, NB3, NB4 = NOTEBOOKS
FULL = {NB1: 26, NB2: 5, NB3: 5, NB4: 10}
DEFAULT_CLASS_DIR = "grader/work/demo"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


# ----------------------------------------------------------------------- the submissions
def solution_code(source: str) -> str:
    """An answer cell of the solutions as a student who got it right would write it: the
    solution without nbgrader's BEGIN/END SOLUTION marker lines."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in SOLUTION_MARKERS)


def filled_notebook(release_path: Path, solution_path: Path):
    """The released notebook with every answer cell replaced by the solution's code."""
    nb = nbformat.read(str(release_path), as_version=4)
    solution = nbformat.read(str(solution_path), as_version=4)
    answers = {grade_id(cell): solution_code(cell.source) for cell in solution.cells if is_answer(cell)}
    for cell in nb.cells:
        if is_answer(cell):
            cell.source = answers[grade_id(cell)]  # KeyError: release and solutions disagree
    return nb


def find_cell(nb, cell_id: str):
    cells = [cell for cell in nb.cells if grade_id(cell) == cell_id]
    assert len(cells) == 1, f"expected one cell with grade_id {cell_id!r}, found {len(cells)}"
    return cells[0]


def replace_in(cell_id: str, old: str, new: str) -> Callable:
    """A mistake: in the answer cell ``cell_id``, ``old`` (which must be there once) becomes ``new``."""

    def mutate(nb):
        cell = find_cell(nb, cell_id)
        assert cell.source.count(old) == 1, (
            f"the demo mistake no longer applies: {old!r} is not (once) in {cell_id} — update DEMO"
        )
        cell.source = cell.source.replace(old, new)
        return nb

    mutate.__doc__ = f"{cell_id}: {old!r} → {new!r}"
    return mutate


def prepend_to(cell_id: str, code: str) -> Callable:
    def mutate(nb):
        cell = find_cell(nb, cell_id)
        cell.source = code + cell.source
        return nb

    return mutate


def set_answer(cell_id: str, code: str) -> Callable:
    def mutate(nb):
        find_cell(nb, cell_id).source = code
        return nb

    return mutate


def delete_cell(cell_id: str) -> Callable:
    def mutate(nb):
        find_cell(nb, cell_id)
        nb.cells = [cell for cell in nb.cells if grade_id(cell) != cell_id]
        return nb

    return mutate


def rename_grade_id(cell_id: str, new_id: str) -> Callable:
    def mutate(nb):
        find_cell(nb, cell_id).metadata["nbgrader"]["grade_id"] = new_id
        return nb

    return mutate


def truncated_json(text: str) -> str:
    """An upload cut off half way: no longer JSON."""
    return text[: len(text) // 2]


AUTOGRAD_ANSWER = '''def cross_entropy_backward(logits, Yb):
    """dloss/dlogits — by asking autograd, which the course does not allow."""
    logits = logits.detach().requires_grad_()
    with torch.enable_grad():
        F.cross_entropy(logits, Yb).backward()
    return logits.grad
'''


@dataclass(frozen=True)
class Change:
    """What a student did to one notebook, and what grading it must give."""

    story: str
    points: float  # the notebook's expected points
    mutate: Callable | None = None  # notebook → notebook
    mutate_text: Callable | None = None  # file text → file text (a damaged file)
    notes: tuple[str, ...] = ()  # substrings the notebook's notes must contain (none: no notes)


@dataclass(frozen=True)
class DemoStudent:
    name: str
    changes: dict = field(default_factory=dict)  # notebook → Change; other notebooks: all right
    untouched: bool = False  # submits the released notebooks as they are
    # notebook → the name the file was saved under (a browser's second download …): graded as usual
    file_names: dict = field(default_factory=dict)

    def points(self, notebook: str) -> float:
        if self.untouched:
            return 0
        change = self.changes.get(notebook)
        return change.points if change else FULL[notebook]

    def notes(self, notebook: str) -> tuple[str, ...]:
        change = self.changes.get(notebook)
        return change.notes if change else ()

    @property
    def total(self) -> float:
        return sum(self.points(nb) for nb in NOTEBOOKS)

    def story(self) -> str:
        if self.untouched:
            return "submitted the released notebooks without writing anything"
        saved = "".join(f"; {nb} saved as '{name}'" for nb, name in self.file_names.items())
        if not self.changes:
            return "every answer right" + saved
        return "; ".join(f"nb{NOTEBOOKS.index(nb) + 1}: {c.story}" for nb, c in self.changes.items())


# The demo class: every student submits all four notebooks; each changed notebook has one
# known mistake or one kind of damage, the student's other notebooks are right.
# Points: nb1 1 per gradient (26), nb2 5, nb3 5, nb4 7 + 3 for the training run = 46.
DEMO: tuple[DemoStudent, ...] = (
    DemoStudent("full_marks", file_names={NB1: f"{NB1} (1).ipynb"}),  # a browser's second download
    DemoStudent("untouched", untouched=True),
    # --- realistic mistakes: each costs exactly the points of the test that checks it
    DemoStudent(
        "slips_dcounts_dlogits",
        {
            NB1: Change(
                "dcounts: forgot the += — the branch through counts_sum overwrites the one "
                "through probs (−1)",
                25,
                replace_in(
                    "grad_counts",
                    "dcounts = dcounts + torch.ones_like(dprobs) * dcounts_sum",
                    "dcounts = torch.ones_like(dprobs) * dcounts_sum",
                ),
            ),
            NB2: Change(
                "dlogits not divided by n, the batch size of the mean (−5)",
                0,
                replace_in(
                    "cross_entropy_backward", "    dlogits /= n  # the loss is a mean over the n rows\n", ""
                ),
            ),
        },
    ),
    DemoStudent(
        "slips_db2_bessel",
        {
            NB1: Change(
                "db2: no sum over the batch dimension b2 was broadcast along (−1)",
                25,
                replace_in("grad_b2", "return dlogits.sum(0)", "return dlogits"),
            ),
            NB3: Change(
                "batchnorm: n instead of n − 1 (Bessel's correction forgotten) (−5)",
                0,
                replace_in("batchnorm_backward", "n / (n - 1) * bnraw", "n / n * bnraw"),
            ),
        },
    ),
    DemoStudent(
        "slips_dc_autograd",
        {
            NB1: Change(
                "dC: rows assigned (dC[Xb] = demb) instead of accumulated, so a character "
                "used twice counts once (−1)",
                25,
                replace_in(
                    "grad_C",
                    "dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))",
                    "dC[Xb.view(-1)] = demb.view(-1, C.shape[1])",
                ),
            ),
            NB2: Change(
                "dlogits by autograd: the notebook's test says ❌ and why, and grading flags it (−5)",
                0,
                set_answer("cross_entropy_backward", AUTOGRAD_ANSWER),
                notes=("test_dlogits: no points — integrity", "autograd"),
            ),
        },
    ),
    # --- broken submissions: each costs only its own notebook, and says why
    DemoStudent(
        "broken_json_endless",
        {
            NB4: Change(
                "the upload was cut off half way (invalid JSON)",
                0,
                mutate_text=truncated_json,
                notes=("NOT GRADED", "invalid JSON"),
            ),
            NB2: Change(
                "`while True: pass` left above the function: the cell is stopped after the per-cell timeout",
                0,
                prepend_to(
                    "cross_entropy_backward", "while True:  # wait for the data (forever)\n    pass\n\n"
                ),
                notes=("stopped after", "cross_entropy_backward"),
            ),
        },
    ),
    DemoStudent(
        "broken_kernel_metadata",
        {
            NB1: Change(
                "deleted the test cell of dprobs: nbgrader puts it back and runs it (no loss)",
                26,
                delete_cell("test_dprobs"),
                notes=("test_dprobs had been deleted",),
            ),
            NB2: Change(
                "the answer cell's grade_id renamed in its metadata: the notebook cannot be graded",
                0,
                rename_grade_id("cross_entropy_backward", "my_cross_entropy"),
                notes=("NOT GRADED", "my_cross_entropy"),
            ),
            NB3: Change(
                "os._exit(1) in the answer cell kills the kernel",
                0,
                prepend_to("batchnorm_backward", "import os\nos._exit(1)\n\n"),
                notes=("NOT GRADED", "kernel died"),
            ),
        },
    ),
)
DEMO_BY_NAME = {student.name: student for student in DEMO}
assert all(nb in NOTEBOOKS for s in DEMO for nb in s.changes)


def submission_texts(student: DemoStudent, root: Path) -> dict[str, str]:
    """The student's four notebooks as file contents."""
    course = Course.load(root=root, class_dir=DEFAULT_CLASS_DIR)
    texts = {}
    for nb in NOTEBOOKS:
        release = course.release_notebook(nb)
        if not release.exists():
            raise SystemExit(
                f"{release} is missing: the demo is built from the released notebooks (`make release`)"
            )
        if student.untouched:
            with open(release, encoding="utf-8", newline="") as handle:
                texts[nb] = handle.read()
            continue
        notebook = filled_notebook(release, course.source_notebook(nb))
        change = student.changes.get(nb)
        if change and change.mutate:
            notebook = change.mutate(copy.deepcopy(notebook))
        text = nbformat.writes(notebook) + "\n"
        if change and change.mutate_text:
            text = change.mutate_text(text)
        texts[nb] = text
    return texts


DEMO_MARKER = ".demo-class"  # in submitted/: this folder holds a generated demo, safe to replace


def build(course: Course, students=DEMO) -> list[Path]:
    """Write the demo class into ``course.submitted``, replacing an earlier demo (its whole
    class folder) — never a real class (a submitted/ folder with students but without the
    demo's marker file is refused). Returns the files written."""
    if course.students() and not (course.submitted / DEMO_MARKER).exists():
        raise SystemExit(
            f"{course.submitted} holds submissions that are not a demo class: choose another --class-dir"
        )
    # The whole demo class is generated: start from nothing (no old gradebook, logs, feedback).
    shutil.rmtree(course.class_dir, ignore_errors=True)
    course.submitted.mkdir(parents=True)
    (course.submitted / DEMO_MARKER).write_text("generated by grader/make_demo_class.py\n")
    written = []
    for student in students:
        folder = course.submitted / student.name / ASSIGNMENT
        folder.mkdir(parents=True)
        for nb, text in submission_texts(student, course.root).items():
            path = folder / student.file_names.get(nb, f"{nb}.ipynb")
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            written.append(path)
    return written


# ------------------------------------------------------------------------------ checking
def differences(course: Course, students=DEMO, *, unsandboxed: bool = False) -> list[str]:
    """Every way the graded demo class differs from ``DEMO`` (empty: as expected). Graded
    with ``--no-sandbox`` (``unsandboxed``), every graded notebook must carry the note that
    says so, and nothing else beyond what ``DEMO`` expects."""
    from backprop_ninja.grading.job import UNSANDBOXED_NOTE
    from backprop_ninja.grading.table import class_rows, short_name

    problems = []
    rows = {row.student: row for row in class_rows(course, [s.name for s in students])}
    for student in students:
        row = rows[student.name]
        for nb in NOTEBOOKS:
            got, want = row.points[nb], student.points(nb)
            if got != want:
                problems.append(
                    f"{student.name} {short_name(nb)}: {got} points, expected {want} "
                    f"({student.story()}); notes: {row.notes[nb]}"
                )
            notes = row.notes[nb]
            if unsandboxed and row.states[nb] == "graded":
                if UNSANDBOXED_NOTE not in notes:
                    problems.append(
                        f"{student.name} {short_name(nb)}: no note that it was graded without a sandbox"
                    )
                notes = [note for note in notes if note != UNSANDBOXED_NOTE]
            text = " | ".join(notes)
            wanted = student.notes(nb)
            for piece in wanted:
                if piece not in text:
                    problems.append(f"{student.name} {short_name(nb)}: notes lack {piece!r}: {text!r}")
            if not wanted and notes:
                problems.append(f"{student.name} {short_name(nb)}: unexpected notes {notes}")
    return problems


def expected_table() -> str:
    width = max(len(s.name) for s in DEMO)
    lines = [f"{'student':<{width}} " + " ".join(f"{'nb' + str(i + 1):>4}" for i in range(4)) + "  total"]
    for s in DEMO:
        lines.append(
            f"{s.name:<{width}} "
            + " ".join(f"{s.points(nb):>4g}" for nb in NOTEBOOKS)
            + f"  {s.total:>5g}   {s.story()}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--class-dir", default=DEFAULT_CLASS_DIR)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="compare the graded class with DEMO")
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="with --check: the class was graded with --no-sandbox (its note is expected)",
    )
    parser.add_argument("--expected", action="store_true", help="print the expected table")
    args = parser.parse_args(argv)
    if args.expected:
        print(expected_table())
        return 0
    course = Course.load(root=args.root, class_dir=args.class_dir)
    if args.check:
        problems = differences(course, unsandboxed=args.no_sandbox)
        if problems:
            print("The demo class is NOT graded as expected:", *problems, sep="\n  ")
            return 1
        print(
            f"✅ all {len(DEMO)} demo students got exactly the expected points and notes "
            f"(grader/make_demo_class.py: DEMO)"
        )
        return 0
    files = build(course)
    print(f"demo class: {len(DEMO)} students, {len(files)} notebooks in {course.submitted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
