"""Tamper suite (issue 5): attacks on the autograder, and honest variants that must not suffer.

One class of students is built from the course's own files — the released notebooks with
their answer cells filled from the solutions (grader/make_demo_class.py's ``filled_notebook``)
— and then each student applies ONE attack or ONE set of honest variants to ONE notebook
(the other three are not submitted: nbgrader counts them as 0). The whole class goes through
the real pipeline once (nbgrader autograde in real kernels, the integrity scan, the verifier
in its own process, the withdrawal of untrusted points), with two workers. Then every
student's points per test and per notebook, the notes in the grade table, the CSV and the
gradebook comment (what the feedback shows) must be exactly what ``CLASS`` below says.

How to read ``CLASS``: an attack pairs a tampering with a WRONG answer wherever the point is
that the tampering must not rescue it (autograd attacks return the right gradient by a
forbidden route instead). ``lost`` are the tests that must end with 0 points; ``flag`` the
substrings the notebook's notes must contain — () means no note at all. A note appears only
when points nbgrader gave are withdrawn: an attack the notebook's own tests already defeat
(hidden tests, restored test cells) costs the points without a note. ``gap`` marks an
attack that the grader does NOT catch today: its test is an expected failure (strict), with
the exact mechanism as the reason, so that it turns red once the hole is closed.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch
from helpers import VERIFY_SEED, WORKERS, digests, grade_cells, load_demo_module
from helpers import make_course_root as course_root
from nbformat.v4 import new_code_cell
from submission_notebooks import HONEST_ROUNDS

from backprop_ninja import data, model
from backprop_ninja.cases import Case
from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class, export_class
from backprop_ninja.grading.status import GRADED, MISSING, read_status
from backprop_ninja.grading.table import class_rows
from backprop_ninja.grading.trust import answer_cell_of
from backprop_ninja.integrity import scan_notebook
from backprop_ninja.testing import CROSS_ENTROPY

REPO = Path(__file__).resolve().parents[1]
NB1, NB2, NB3, NB4 = NOTEBOOKS
demo = load_demo_module()  # grader/make_demo_class.py: filled_notebook and the mutation helpers
CANARY_TEXT = "the gradebook, or another student's notebook\n"


def read_test_points() -> dict[str, dict[str, float]]:
    """Points of every graded test cell, from the solutions' nbgrader metadata."""
    points = {}
    for nb in NOTEBOOKS:
        cells = nbformat.read(str(REPO / "solutions" / ASSIGNMENT / f"{nb}.ipynb"), as_version=4).cells
        points[nb] = {
            cell.metadata.nbgrader["grade_id"]: float(cell.metadata.nbgrader["points"])
            for cell in cells
            if cell.metadata.get("nbgrader", {}).get("grade")
        }
    return points


TEST_POINTS = read_test_points()
ALL = "all"  # every graded test of the notebook


# ------------------------------------------------------------------- building submissions
def chain(*mutations: Callable) -> Callable:
    def mutate(nb):
        for mutation in mutations:
            nb = mutation(nb)
        return nb

    return mutate


def add_cell_after(cell_id: str, code: str) -> Callable:
    """A code cell the student added right after the cell ``cell_id`` (no nbgrader metadata)."""

    def mutate(nb):
        index = nb.cells.index(demo.find_cell(nb, cell_id))
        nb.cells.insert(index + 1, new_code_cell(code))
        return nb

    return mutate


def replace_cell(cell_id: str, code: str) -> Callable:
    """The whole source of the cell ``cell_id`` (answer or test cell) becomes ``code``."""
    return demo.set_answer(cell_id, code)


def answers(variants: dict[str, str]) -> Callable:
    """Answer cells replaced by other code: {function (= answer grade_id): code}."""
    return chain(*(replace_cell(function, code) for function, code in variants.items()))


# The wrong answers the attacks try to rescue (each fails the notebook's own test).
WRONG_DLOGITS = demo.replace_in(
    "cross_entropy_backward", "    dlogits /= n  # the loss is a mean over the n rows\n", ""
)  # no / n
WRONG_BATCHNORM = demo.replace_in(  # Bessel's correction forgotten
    "batchnorm_backward", "n / (n - 1) * bnraw", "n / n * bnraw"
)
WRONG_DPROBS = demo.replace_in("grad_probs", "return dlogprobs / probs", "return -dlogprobs / probs")


def hard_coded_dlogits() -> str:
    """An answer cell that returns notebook 2's dlogits as a literal (copied from a run of the
    notebook's own batch): it passes the visible test and nothing else."""
    splits = data.load_splits()
    g = torch.Generator().manual_seed(model.LECTURE_SEED)
    params = model.init_params(len(splits.vocab), n_hidden=64, generator=g)
    Xb, Yb = data.minibatch(splits.Xtr, splits.Ytr, batch_size=32, generator=g)
    expected = CROSS_ENTROPY.trial(Case.from_batch(params, Xb, Yb)).expected
    return (
        f"DLOGITS = torch.tensor({expected.tolist()!r})  # printed from the notebook's batch\n\n"
        "def cross_entropy_backward(logits, Yb):\n    return DLOGITS.clone()\n"
    )


# ------------------------------------------------------------------------- attack code
PATCH_TENSOR_ALL = "torch.Tensor.all = lambda self, *args, **kwargs: torch.tensor(True)\n\n"
REBIND_TEST_HELPERS = "test_on = test_hidden = lambda *args, **kwargs: None\n\n"
PATCH_COURSE_PACKAGE = """\
import backprop_ninja.testing
honest_run_trial = backprop_ninja.testing.run_trial
# every trial is run on a function that returns the trial's own expected answer
backprop_ninja.testing.run_trial = lambda function, trial: honest_run_trial(lambda *args: trial.expected, trial)
"""
SKIP_TEST_CELLS = """\
def skip_tests(lines):
    return ["pass\\n"] if any("test_on(" in line for line in lines) else lines

get_ipython().input_transformers_post.append(skip_tests)
"""
LYING_TENSOR = """\
class Agreeable(torch.Tensor):
    \"\"\"A tensor that agrees with every comparison.\"\"\"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.all:
            return torch.tensor(True)
        if func is torch.Tensor.any:
            return torch.tensor(False)
        return super().__torch_function__(func, types, args, kwargs or {})

"""
STACK_WALK = """\
import sys

def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    \"\"\"The test's expected answer, found in a caller's frame.\"\"\"
    frame = sys._getframe(1)
    while frame is not None:
        trial = frame.f_locals.get("trial")
        if trial is not None and hasattr(trial, "expected"):
            return trial.expected.clone()
        frame = frame.f_back
    return torch.zeros_like(dhpreact)
"""
AUTOGRAD_BATCHNORM = """\
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    \"\"\"dhprebn by autograd: rebuild the normalisation from its output, then backward().\"\"\"
    hprebn = (bnraw / bnvar_inv).detach().requires_grad_()
    with torch.enable_grad():
        bndiff = hprebn - hprebn.mean(0, keepdim=True)
        bnvar = (bndiff**2).sum(0, keepdim=True) / (hprebn.shape[0] - 1)
        hpreact = bngain * bndiff * (bnvar + 1e-5) ** -0.5
        hpreact.backward(dhpreact)
    return hprebn.grad
"""
AUTOGRAD_DC = """\
def grad_C(C, Xb, demb):
    \"\"\"dC by torch.autograd.grad through the embedding lookup.\"\"\"
    C = C.detach().requires_grad_()
    with torch.enable_grad():
        (dC,) = torch.autograd.grad(C[Xb], C, grad_outputs=demb)
    return dC
"""
OBFUSCATED_AUTOGRAD = """\
def manual_backward(params, cache, Xb, Yb):
    \"\"\"Every gradient by autograd, its names spelt in pieces.\"\"\"
    engine = getattr(torch, "auto" + "grad")
    with getattr(torch, "inference_" + "mode")(False), getattr(torch, "enable_" + "grad")():
        leaves = {k: getattr(v.clone(), "requires_" + "grad_")() for k, v in params.items()}
        emb = leaves["C"][Xb.clone()]
        hprebn = emb.view(emb.shape[0], -1) @ leaves["W1"] + leaves["b1"]
        bndiff = hprebn - hprebn.mean(0, keepdim=True)
        bnvar = (bndiff**2).sum(0, keepdim=True) / (Xb.shape[0] - 1)
        hpreact = leaves["bngain"] * bndiff * (bnvar + 1e-5) ** -0.5 + leaves["bnbias"]
        logits = torch.tanh(hpreact) @ leaves["W2"] + leaves["b2"]
        loss = F.cross_entropy(logits, Yb.clone())
        grads = getattr(engine, "gr" + "ad")(loss, list(leaves.values()))
    return {k: g.detach() for k, g in zip(leaves, grads)}
"""
EXEC_AUTOGRAD = '''\
exec("""
def cross_entropy_backward(logits, Yb):
    x = logits.detach().requires_grad_()
    with torch.enable_grad():
        F.cross_entropy(x, Yb).backward()
    return x.grad
""")
'''
AUTOGRAD_IN_ADDED_CELL = """\
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    \"\"\"Redefined outside the answer cell, by autograd.\"\"\"
    hprebn = (bnraw / bnvar_inv).detach().requires_grad_()
    with torch.enable_grad():
        bndiff = hprebn - hprebn.mean(0, keepdim=True)
        bnvar = (bndiff**2).sum(0, keepdim=True) / (hprebn.shape[0] - 1)
        (bngain * bndiff * (bnvar + 1e-5) ** -0.5).backward(dhpreact)
    return hprebn.grad
"""
HIDDEN_KERNEL_PATCH = """\
look = getattr
tests = look(test_on, "__globals__")  # backprop_ninja.testing's namespace
honest_run_trial = tests["run_trial"]
tests["run_trial"] = lambda function, trial: honest_run_trial(lambda *args: trial.expected, trial)

"""
# The file-writing attack knows where the canary is (an absolute path, as a student who has
# read this repository would): only the sandbox stands between it and the file.
CANARY_PATH = Path(tempfile.gettempdir()) / f"backprop-ninja-tamper-canary-{os.getpid()}.txt"
WRITE_FILE = f"""\
with open({str(CANARY_PATH)!r}, "w") as handle:
    handle.write("overwritten by a student's notebook\\n")
"""
FORWARD_AD = """\
def cross_entropy_backward(logits, Yb):
    \"\"\"Forward-mode AD, one column at a time, reached through an alias of getattr.\"\"\"
    look = getattr
    fwad = look(look(torch, "autograd"), "forward_ad")
    n, V = logits.shape
    dlogits = torch.empty_like(logits)
    for j in range(V):
        with fwad.dual_level():
            tangent = torch.zeros_like(logits)
            tangent[:, j] = 1.0
            losses = F.cross_entropy(fwad.make_dual(logits, tangent), Yb, reduction="none")
            dlogits[:, j] = fwad.unpack_dual(losses).tangent / n
    return dlogits
"""
AUTOGRAD_ENGINE = """\
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    \"\"\"Reverse mode through autograd's engine, reached through an alias of getattr.\"\"\"
    look = getattr
    switch = look(look(torch, "_C"), "_set_grad_enabled")
    switch(True)
    hprebn = torch.tensor((bnraw / bnvar_inv).tolist(), dtype=bnraw.dtype, **{"requires_grad": True})
    bndiff = hprebn - hprebn.mean(0, keepdim=True)
    bnvar = (bndiff**2).sum(0, keepdim=True) / (hprebn.shape[0] - 1)
    hpreact = bngain * bndiff * (bnvar + 1e-5) ** -0.5
    run_backward = look(look(look(torch, "autograd"), "graph"), "_engine_run_backward")
    (dhprebn,) = run_backward((hpreact,), (dhpreact,), False, False, (hprebn,), True, False)
    switch(False)
    return dhprebn.detach()
"""

# ------------------------------------------------------------------------ honest code
HONEST_CROSS_ENTROPY = """\
def cross_entropy_backward(logits, Yb):
    \"\"\"softmax minus the one-hot targets, over n.\"\"\"
    n, V = logits.shape
    return (F.softmax(logits, dim=1) - F.one_hot(Yb, V).to(logits.dtype)) / n
"""
HONEST_BATCHNORM = """\
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    \"\"\"Sums without keepdim: a (H,) row broadcasts back over the batch just the same.\"\"\"
    n = dhpreact.shape[0]
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                     - n * (n - 1) ** -1 * bnraw * (dhpreact * bnraw).sum(0))
"""
HONEST_MANUAL_BACKWARD = """\
def manual_backward(params, cache, Xb, Yb):
    \"\"\"Other formulations throughout: exp/sum softmax, tanh recomputed, no keepdim, index_put_.\"\"\"
    n = Xb.shape[0]
    logits = cache["logits"]
    counts = (logits - logits.max(1, keepdim=True).values).exp()
    dlogits = counts * counts.sum(1, keepdim=True) ** -1
    dlogits[range(n), Yb] -= 1
    dlogits = dlogits / n
    dh = dlogits @ params["W2"].T
    dhpreact = (1 - torch.tanh(cache["hpreact"]) ** 2) * dh
    bnraw, bnvar_inv = cache["bnraw"], cache["bnvar_inv"]
    dhprebn = params["bngain"] * bnvar_inv / n * (
        n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    demb = (dhprebn @ params["W1"].T).view(cache["emb"].shape)
    dC = torch.zeros_like(params["C"])
    dC.index_put_((Xb.flatten(),), demb.flatten(0, 1), accumulate=True)
    return {
        "C": dC, "W1": cache["embcat"].T @ dhprebn, "b1": dhprebn.sum(0),
        "W2": cache["h"].T @ dlogits, "b2": dlogits.sum(0),
        "bngain": (bnraw * dhpreact).sum(0).unsqueeze(0), "bnbias": dhpreact.sum(0)[None, :],
    }
"""
AUTOGRAD_CHECK = """\
# my own check, as in the lecture: the same gradient as PyTorch's autograd?
logits_leaf = logits.detach().clone().requires_grad_()
F.cross_entropy(logits_leaf, Yb).backward()
mine = cross_entropy_backward(logits, Yb)
print("same as autograd:", torch.allclose(mine, logits_leaf.grad, atol=1e-6))
"""
IMPLICIT_SOFTMAX_DIM = """\
def cross_entropy_backward(logits, Yb):
    n = logits.shape[0]
    dlogits = F.softmax(logits)  # dim left out: torch picks dim=1 for a 2-D input, and warns
    dlogits[torch.arange(n), Yb] -= 1
    return dlogits / n
"""


# -------------------------------------------------------------------------- the class
@dataclass(frozen=True)
class Student:
    """One submitted notebook with one attack (or honest variants), and what grading must give."""

    name: str
    notebook: str  # the one notebook submitted; the other three count 0 (not submitted)
    story: str
    mutate: Callable  # the filled-in notebook → the submitted one
    points: float  # the submitted notebook's expected points
    lost: tuple[str, ...] | str = ()  # tests that must get 0 (ALL: every test of the notebook)
    flag: tuple[str, ...] = ()  # substrings the notebook's notes must contain; (): no notes
    honest: bool = False
    gap: str | None = None  # not caught today: why (the test is a strict expected failure)

    def lost_tests(self) -> set[str]:
        return set(TEST_POINTS[self.notebook]) if self.lost == ALL else set(self.lost)

    def expected_scores(self) -> dict[str, float]:
        lost = self.lost_tests()
        return {test: 0.0 if test in lost else points for test, points in TEST_POINTS[self.notebook].items()}


# A flag's reason: "points withdrawn — <reason>" when the notebook's test passed, or
# "no points — <reason>" when the test itself already failed (it runs the same scan).
MONKEYPATCH = "integrity: ⚑ monkeypatch"
DYNAMIC = "integrity: ⚑ dynamic"
AUTOGRAD = "integrity: ⚑ autograd"
VERIFIER = "points withdrawn — verifier:"

ATTACKS = (
    # --- the kernel is changed so that the notebook's own tests pass a wrong answer: the
    # scan voids every test of the notebook, the verifier fails the wrong answer anyway
    Student(
        "patch_tensor_all",
        NB3,
        "torch.Tensor.all patched to always say True, so that the "
        "comparison in check() passes; Bessel's correction forgotten",
        chain(WRONG_BATCHNORM, demo.prepend_to("batchnorm_backward", PATCH_TENSOR_ALL)),
        0,
        ALL,
        (MONKEYPATCH, "torch.Tensor.all"),
    ),
    Student(
        "rebind_test_helpers",
        NB1,
        "test_on and test_hidden rebound to a no-op in an answer "
        "cell: every later test cell passes; dprobs has its sign flipped",
        chain(WRONG_DPROBS, demo.prepend_to("grad_probs", REBIND_TEST_HELPERS)),
        0,
        ALL,
        (MONKEYPATCH, "test_on"),
    ),
    Student(
        "patch_course_package",
        NB2,
        "an added cell replaces backprop_ninja.testing.run_trial "
        "(what test_on and test_hidden call) so that every trial checks the expected answer "
        "against itself; dlogits not divided by n",
        chain(WRONG_DLOGITS, add_cell_after("cross_entropy_backward", PATCH_COURSE_PACKAGE)),
        0,
        ALL,
        (MONKEYPATCH, "backprop_ninja.testing.run_trial"),
    ),
    Student(
        "ipython_input_transformer",
        NB3,
        "an added cell installs an IPython input "
        "transformer that turns every test cell into `pass`; Bessel forgotten",
        chain(WRONG_BATCHNORM, add_cell_after("batchnorm_backward", SKIP_TEST_CELLS)),
        0,
        ALL,
        (DYNAMIC, "get_ipython"),
    ),
    Student(
        "lying_tensor_subclass",
        NB2,
        "the wrong dlogits is returned as a torch.Tensor "
        "subclass whose .all() is always True and .any() always False",
        chain(
            WRONG_DLOGITS,
            demo.replace_in(
                "cross_entropy_backward", "return dlogits", "return dlogits.as_subclass(Agreeable)"
            ),
            demo.prepend_to("cross_entropy_backward", LYING_TENSOR),
        ),
        0,
        ALL,
        (DYNAMIC, "can make a tensor lie about its values"),
    ),
    # --- the expected answer taken from the test's own frame, or copied from the visible batch
    Student(
        "stack_walk",
        NB3,
        "sys._getframe walks up to the test's frame and returns "
        "trial.expected (right in the kernel, zeros anywhere else)",
        replace_cell("batchnorm_backward", STACK_WALK),
        0,
        ALL,
        (DYNAMIC, "`import sys`"),
    ),
    Student(
        "hard_coded_tensor",
        NB2,
        "returns a literal tensor copied from the notebook's "
        "batch: the visible test passes, the hidden tests fail",
        lambda nb: replace_cell("cross_entropy_backward", hard_coded_dlogits())(nb),
        0,
        ALL,
    ),
    # --- autograd: the right gradient by a forbidden route
    Student(
        "autograd_backward",
        NB3,
        "requires_grad_ + backward() + .grad on a rebuilt normalisation",
        replace_cell("batchnorm_backward", AUTOGRAD_BATCHNORM),
        0,
        ALL,
        (AUTOGRAD, "batchnorm_backward uses autograd"),
    ),
    Student(
        "autograd_grad_one_function",
        NB1,
        "torch.autograd.grad for dC only: only dC's point is lost",
        replace_cell("grad_C", AUTOGRAD_DC),
        25,
        ("test_dC",),
        (AUTOGRAD, "grad_C uses autograd"),
    ),
    Student(
        "obfuscated_getattr",
        NB4,
        'manual_backward by autograd, every name spelt in pieces through getattr(torch, "auto" + "grad")',
        replace_cell("manual_backward", OBFUSCATED_AUTOGRAD),
        0,
        ALL,
        (DYNAMIC, "computed name"),
    ),
    Student(
        "exec_string",
        NB2,
        "the autograd answer hidden in a string and exec()'d",
        replace_cell("cross_entropy_backward", EXEC_AUTOGRAD),
        0,
        ALL,
        (DYNAMIC, "`exec`"),
    ),
    Student(
        "added_cell_redefines",
        NB3,
        "an added cell after the (wrong, Bessel) answer "
        "redefines batchnorm_backward by autograd: the notebook's test scans the cell that "
        "defined the function it calls and fails it for autograd, so nothing is earned (the "
        "verifier, which runs the answer cells only, would fail the Bessel slip anyway)",
        chain(WRONG_BATCHNORM, add_cell_after("batchnorm_backward", AUTOGRAD_IN_ADDED_CELL)),
        0,
        ALL,
        (),
    ),
    # --- nbgrader's own defences
    Student(
        "edited_test_cell",
        NB2,
        "the test cell's source replaced by `pass`; dlogits not "
        "divided by n (nbgrader restores the test from the gradebook)",
        chain(WRONG_DLOGITS, replace_cell("test_dlogits", "pass\n")),
        0,
        ALL,
    ),
    Student(
        "deleted_test_cell",
        NB1,
        "the test cell of dprobs deleted; dprobs has its sign "
        "flipped (nbgrader puts the test back and runs it)",
        chain(WRONG_DPROBS, demo.delete_cell("test_dprobs")),
        25,
        ("test_dprobs",),
        ("test cell test_dprobs had been deleted; it was put back and run",),
    ),
    # --- beyond the points
    Student(
        "aliased_getattr_kernel_patch",
        NB3,
        "an alias of getattr reaches "
        "test_on.__globals__ and replaces run_trial there; Bessel forgotten (the scan flags "
        "the alias; the verifier fails the answer too)",
        chain(WRONG_BATCHNORM, demo.prepend_to("batchnorm_backward", HIDDEN_KERNEL_PATCH)),
        0,
        ALL,
        (DYNAMIC, "`getattr`"),
    ),
    Student(
        "writes_a_file",
        NB2,
        "an added cell overwrites a file outside the notebook's "
        "folder (with the right answer, so that there are points to withdraw)",
        add_cell_after("cross_entropy_backward", WRITE_FILE),
        0,
        ALL,
        (DYNAMIC, "`open`, which writes files"),
    ),
    # --- autograd by the back doors (were holes; closed by the scan and the verifier)
    Student(
        "forward_mode_ad",
        NB2,
        "dlogits by forward-mode AD (torch.autograd.forward_ad), reached through an alias of getattr",
        replace_cell("cross_entropy_backward", FORWARD_AD),
        0,
        ALL,
        (DYNAMIC, "`getattr`"),
    ),
    Student(
        "autograd_engine",
        NB3,
        "dhprebn by reverse mode through torch._C._set_grad_enabled "
        "and torch.autograd.graph._engine_run_backward, reached through an alias of getattr",
        replace_cell("batchnorm_backward", AUTOGRAD_ENGINE),
        0,
        ALL,
        (DYNAMIC, "`getattr`"),
    ),
)

HONEST = (
    Student(
        "honest_nb1_round0",
        NB1,
        "scatter_ for the max branch, dC by a Python double "
        "loop, 1 - torch.tanh(hpreact)**2, probs**-1, -1 / x**2, [:, None] and "
        ".unsqueeze(0) instead of keepdim, a lambda",
        answers(HONEST_ROUNDS[0]),
        26,
        honest=True,
    ),
    Student(
        "honest_nb1_round1",
        NB1,
        "indexing for the max branch, index_put_(accumulate="
        "True) for dC, @torch.no_grad, dlogprobs / probs, .view(-1, 1), a numpy check, a "
        "helper function, F.one_hot for dlogprobs",
        answers(HONEST_ROUNDS[1]),
        26,
        honest=True,
    ),
    Student(
        "honest_autograd_check",
        NB2,
        "softmax minus F.one_hot over n, then an added cell "
        "that compares it with loss.backward()'s .grad, as the lecture does (the integrity "
        "scan allows autograd in added cells: the verifier runs answer cells only)",
        chain(
            replace_cell("cross_entropy_backward", HONEST_CROSS_ENTROPY),
            add_cell_after("cross_entropy_backward", AUTOGRAD_CHECK),
        ),
        5,
        honest=True,
    ),
    Student(
        "honest_no_keepdim",
        NB3,
        "column sums without keepdim (they broadcast back over the batch) and (n - 1) ** -1",
        replace_cell("batchnorm_backward", HONEST_BATCHNORM),
        5,
        honest=True,
    ),
    Student(
        "honest_manual_backward",
        NB4,
        "softmax from exp/sum, 1 - torch.tanh(hpreact)**2, "
        "sums without keepdim then unsqueeze/[None], index_put_(accumulate=True) for dC",
        replace_cell("manual_backward", HONEST_MANUAL_BACKWARD),
        10,
        honest=True,
    ),
    Student(
        "honest_implicit_softmax_dim",
        NB2,
        "F.softmax(logits) without dim: the right result, with torch's UserWarning",
        replace_cell("cross_entropy_backward", IMPLICIT_SOFTMAX_DIM),
        5,
        honest=True,
    ),
)
CLASS = ATTACKS + HONEST
BY_NAME = {student.name: student for student in CLASS}


def student_params(students):
    return [
        pytest.param(s, id=s.name, marks=[pytest.mark.xfail(strict=True, reason=s.gap)] if s.gap else [])
        for s in students
    ]


# ------------------------------------------------------------------------ grading it
def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(course: Course) -> None:
    for student in CLASS:
        notebook = demo.filled_notebook(
            course.release_notebook(student.notebook), course.source_notebook(student.notebook)
        )
        path = course.submitted_notebook(student.name, student.notebook)
        path.parent.mkdir(parents=True)
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(nbformat.writes(student.mutate(notebook)) + "\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The tamper class, graded once by the real pipeline for every test of this module."""
    course = Course.load(root=course_root(tmp_path_factory.mktemp("tamper")))
    build(course)
    canary = CANARY_PATH
    canary.write_text(CANARY_TEXT)
    before = digests(course.submitted)
    start, cpu = time.monotonic(), _children_cpu_seconds()
    autograde_class(course, workers=WORKERS, verify_seed=VERIFY_SEED, progress=False)
    seconds, cpu = time.monotonic() - start, _children_cpu_seconds() - cpu
    export_class(course)
    # CPU seconds of the workers, kernels and verifier children: on an idle machine the wall
    # time is about CPU / workers; on a busy one, the wall time says more about the neighbours.
    print(
        f"\ntamper class: {len(CLASS)} students graded in {seconds:.0f} s "
        f"({WORKERS} workers, {cpu:.0f} CPU s)"
    )
    with course.gradebook() as gb:
        comments = {}
        for student in CLASS:
            submission = gb.find_submission_notebook(student.notebook, ASSIGNMENT, student.name)
            comments[student.name] = {c.name: c.manual_comment or "" for c in submission.comments}
    with open(course.notebook_grades_csv, newline="", encoding="utf-8") as handle:
        csv_rows = {(r["student_id"], r["notebook"]): r for r in csv.DictReader(handle)}
    return {
        "course": course,
        "before": before,
        "canary": canary,
        "comments": comments,
        "csv": csv_rows,
        "rows": {row.student: row for row in class_rows(course)},
    }


# ------------------------------------------------------------------------------ tests
def test_the_table_has_enough_distinct_attacks_and_honest_variants():
    assert len(ATTACKS) >= 12
    assert len(HONEST) >= 6
    assert len(BY_NAME) == len(CLASS)
    for student in CLASS:
        full = sum(TEST_POINTS[student.notebook].values())
        lost = sum(TEST_POINTS[student.notebook][t] for t in student.lost_tests())
        assert student.lost_tests() <= set(TEST_POINTS[student.notebook]), student.name
        assert student.points == full - lost, student.name
        assert not (student.honest and (student.lost or student.flag)), student.name


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
@pytest.mark.parametrize("student", student_params(CLASS))
def test_each_student_gets_exactly_the_expected_points_and_notes(graded, student):
    course, row = graded["course"], graded["rows"][student.name]
    scores = {
        test: score
        for (nb, test), score in grade_cells(course, student.name).items()
        if nb == student.notebook
    }
    notes = " | ".join(row.notes[student.notebook])
    assert (scores, row.points[student.notebook]) == (student.expected_scores(), student.points), notes
    # The three notebooks not submitted: 0 points, reported as such.
    for nb in NOTEBOOKS:
        if nb != student.notebook:
            assert (row.points[nb], row.states[nb]) == (0, MISSING)
    assert row.states[student.notebook] == GRADED
    for piece in student.flag:
        assert piece in notes, (piece, notes)
    if not student.flag:
        assert notes == ""
    # The same notes in the CSV, and on the answer cell in the gradebook (what the feedback shows).
    assert graded["csv"][(student.name, student.notebook)]["notes"] == "; ".join(row.notes[student.notebook])
    withdrawn = read_status(course.status, student.name).result(student.notebook).withdrawn
    assert set(withdrawn) <= student.lost_tests()
    comments = graded["comments"][student.name]
    for test, reason in withdrawn.items():
        assert f"{test}: " in comments[answer_cell_of(student.notebook, test)]
        assert reason in comments[answer_cell_of(student.notebook, test)]


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_no_honest_variant_loses_a_point_or_is_flagged(graded):
    course = graded["course"]
    problems = []
    for student in (s for s in HONEST if s.gap is None):  # a known gap fails in its own test
        result = read_status(course.status, student.name).result(student.notebook)
        scores = {t: s for (nb, t), s in grade_cells(course, student.name).items() if nb == student.notebook}
        if result.withdrawn or result.notes or scores != TEST_POINTS[student.notebook]:
            problems.append((student.name, scores, result.notes, result.withdrawn))
    assert not problems


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_submitted_files_are_byte_identical_after_grading(graded):
    assert digests(graded["course"].submitted) == graded["before"]


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_notebook_cannot_write_outside_its_folder(graded):
    assert graded["canary"].read_text() == CANARY_TEXT


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_autograd_in_an_added_cell_is_allowed_but_never_graded(graded):
    """The integrity module's decision on added cells: they may call autograd (the lecture
    compares with loss.backward()), because the verifier runs answer cells only. So the scan
    finds nothing in either submission; the honest one keeps its points. The one whose added
    cell redefines the graded function by autograd earns none: the notebook's own test scans
    the cell that defined the function it calls, and its ❌ names autograd."""
    course = graded["course"]
    for name in ("honest_autograd_check", "added_cell_redefines"):
        student = BY_NAME[name]
        submitted = course.submitted_notebook(name, student.notebook)
        assert scan_notebook(submitted, course.source_notebook(student.notebook)) == [], name
    assert read_status(course.status, "added_cell_redefines").result(NB3).withdrawn == {}
    with course.gradebook() as gb:
        assert gb.find_grade("test_dhprebn", NB3, ASSIGNMENT, "added_cell_redefines").auto_score == 0
    autograded = json.loads(course.autograded_notebook("added_cell_redefines", NB3).read_text())
    (test_cell,) = [
        c for c in autograded["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_dhprebn"
    ]
    shown = json.dumps(test_cell["outputs"], ensure_ascii=False)
    assert "autograd" in shown
    assert "❌" in shown
