"""The one vocabulary of what can be wrong with an answer, shared by the notebooks' tests,
``backprop-ninja check``, the verifier and the grader's notes.

The values are stable: the class report reads them from the verdicts test cells display, and
status files and JSON verdicts store them.
"""

from __future__ import annotations

from enum import Enum


class Problem(str, Enum):
    """Why a test failed. A ``str``: it compares equal to its value and serialises as it."""

    # What came back is not a gradient at all
    NONE = "none"  # the function returned None (a forgotten `return`)
    NOT_TENSOR = "not_tensor"
    NOT_FLOAT = "not_float"
    # A gradient, but wrong: the diagnosis (judge.diagnosis)
    SHAPE = "shape"
    DTYPE = "dtype"
    NAN = "nan"
    INF = "inf"
    SIGN = "sign"
    FACTOR = "factor"
    TRANSPOSED = "transposed"
    ALTERNATIVE = "alternative"  # matches a known wrong formula or branch
    TERM = "term"  # a term of the right answer is missing, scaled, sign-flipped or from the wrong tensor
    PRECISION = "precision"  # right only to float32's precision (part of it computed in float32)
    ZERO = "zero"
    HARD_CODED = "hard_coded"
    MISMATCH = "mismatch"
    KEYS = "keys"  # manual_backward: not a dict, or a missing or misnamed key
    WRONG = "wrong"  # the verifier's word for all of the above
    # The call did not return an answer
    NOT_IMPLEMENTED = "not_implemented"
    ERROR = "error"  # the student's code raised
    MISSING = "missing"  # the function is not defined
    AUTOGRAD = "autograd"  # it used autograd (an integrity flag)
    TIMEOUT = "timeout"
    # The verifier could not run the answers as a whole
    CRASH = "crash"
    BAD_OUTPUT = "bad_output"
    INVALID = "invalid"  # the submission cannot be read
    # Notebook 4's training test (the losses did not fall as they should)
    TRAINING = "training"
    # The grader's words for a test that lost its points without a verdict of its own
    WITHDRAWN = "withdrawn"  # by the integrity scan or the verifier
    NOT_GRADED = "not_graded"  # nbgrader could not grade the notebook
    NO_VERDICT = "no_verdict"  # the cell stopped before its test ran

    def __str__(self) -> str:
        return self.value

    @property
    def in_the_answer(self) -> bool:
        """The function returned, but its answer is wrong (not: it could not be called)."""
        return self in ANSWER_PROBLEMS

    def graded(self) -> Problem:
        """The verifier's coarser word (``verify.PROBLEMS``): a wrong answer is ``wrong``."""
        return Problem.WRONG if self.in_the_answer else self


# What can be wrong with what a function returned (the verifier calls all of them "wrong").
ANSWER_PROBLEMS = frozenset(
    {
        Problem.NONE,
        Problem.NOT_TENSOR,
        Problem.NOT_FLOAT,
        Problem.SHAPE,
        Problem.DTYPE,
        Problem.NAN,
        Problem.INF,
        Problem.SIGN,
        Problem.FACTOR,
        Problem.TRANSPOSED,
        Problem.ALTERNATIVE,
        Problem.TERM,
        Problem.PRECISION,
        Problem.ZERO,
        Problem.HARD_CODED,
        Problem.MISMATCH,
        Problem.KEYS,
        Problem.WRONG,
    }
)
# Why a call gave no answer, or the verifier's process none at all.
CALL_PROBLEMS = frozenset(
    {
        Problem.NOT_IMPLEMENTED,
        Problem.ERROR,
        Problem.MISSING,
        Problem.AUTOGRAD,
        Problem.TIMEOUT,
        Problem.CRASH,
        Problem.BAD_OUTPUT,
        Problem.INVALID,
    }
)
# What says nothing about what a class misunderstands (the class report leaves it out).
NOT_MISTAKES = frozenset(
    {Problem.NOT_GRADED, Problem.WITHDRAWN, Problem.NO_VERDICT, Problem.NOT_IMPLEMENTED, Problem.MISSING}
)
# What the verifier's verdicts may say (``verify.Verdict.problem``).
GRADED_PROBLEMS = (Problem.WRONG, *sorted(CALL_PROBLEMS, key=list(Problem).index))
