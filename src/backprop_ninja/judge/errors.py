"""A student's exception, or a notebook run out of order, as one line that says what to do.

``explain_exception`` turns an error raised inside a student's function into one line with
the line of the student's cell it happened on and, for the shape errors of a matrix product,
a broadcast, a ``view`` or an index, the likely cause (a hard-coded size is named).

``install_name_error_handler`` makes a ``NameError`` in a test cell say which cell to run: the
setup cell at the top (after a kernel restart, say) or the answer cell above. Every test cell
imports the test helpers, which installs it, so it holds even after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .diagnosis import one_hot_advice
from .sizes import LECTURE_SIZES, SIZE_NAMES, hard_coded, hard_coded_sizes

MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
BROADCAST = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")
VIEW = re.compile(r"shape '\[([-\d, ]+)\]' is invalid for input of size (\d+)")
OUT_OF_BOUNDS = re.compile(r"index (-?\d+) is out of bounds for dimension (\d+) with size (\d+)")
NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")

SETUP_HINT = (
    "run the setup cell at the top of the notebook first (after a restart, every cell above runs again)"
)


def student_line(error: BaseException, function: Callable) -> int | None:
    """The line, in the student's cell, of the deepest frame of the student's code."""
    code = getattr(function, "__code__", None)
    filename = getattr(code, "co_filename", None)
    line = None
    tb = error.__traceback__
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def likely_cause(
    message: str, sizes: Mapping[str, int] | None, inputs: Mapping[str, tuple[int, ...]] | None = None
) -> str | None:
    """What usually causes an error with this message, given the case's sizes."""
    vocabulary = (sizes or {}).get("V")
    if (match := BROADCAST.search(message)) and vocabulary is not None:
        a, b = int(match[1]), int(match[2])
        fewer = b if a == vocabulary else a if b == vocabulary else None
        others = set((sizes or {}).values()) | set(LECTURE_SIZES["V"])
        if fewer is not None and fewer < vocabulary and fewer not in others:
            return one_hot_advice(fewer, vocabulary)
    several = hard_coded_sizes([int(number) for number in NUMBER.findall(message)], sizes, inputs)
    if several:
        return several
    for number in NUMBER.findall(message):
        advice = hard_coded(int(number), sizes, inputs=inputs)
        if advice and (sizes is None or int(number) not in sizes.values()):
            return advice
    if match := MATMUL.search(message):
        rows, inner, other_inner, columns = (int(match[i]) for i in range(1, 5))
        return matmul_advice(rows, inner, other_inner, columns, inputs)
    if BROADCAST.search(message):
        return (
            "these shapes do not broadcast: keep a summed dim with keepdim=True, "
            "sum over the right dim, or transpose"
        )
    if VIEW.search(message):
        return "view's shape must hold exactly the tensor's elements: take the sizes from the inputs' shapes"
    if match := OUT_OF_BOUNDS.search(message):
        size = int(match[3])
        for key, value in (sizes or {}).items():
            lecture = LECTURE_SIZES[key][0]
            if value == size and lecture > size:
                name, how = SIZE_NAMES[key]
                return (
                    f"an index or loop runs past the {name} {size}: a hard-coded {name} {lecture}? "
                    f"Take the range from the inputs' shapes ({how})"
                )
        return "an index or loop runs past the end of a dimension: take its range from the inputs' shapes"
    if "could not be broadcast" in message or "shape mismatch" in message:
        return "the index tensors have different lengths: index with [range(n), Yb] where n = x.shape[0]"
    return None


def explain_exception(
    error: BaseException,
    function: Callable,
    sizes: Mapping[str, int] | None = None,
    name: str | None = None,
    inputs: Mapping[str, tuple[int, ...]] | None = None,
) -> str:
    """``<name> raised <Type>: <message> (line k of its cell) — <likely cause>``, on one line."""
    name = name or getattr(function, "__name__", "the function")
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:199] + "…"
    line = student_line(error, function)
    where = f" (line {line} of its cell)" if line else ""
    cause = likely_cause(text, sizes, inputs)
    return f"{name} raised {type(error).__name__}: {text}{where}" + (f" — {cause}" if cause else "")


# ------------------------------------------------------------------ test cells out of order
class StudentMessage(Exception):
    """Shown in a notebook as its one line, without a traceback."""

    def _render_traceback_(self):
        return [f"❌ {self}"]


def name_error_message(name: str | None, user_ns: Mapping, answer_functions: set[str]) -> str | None:
    """What to say about ``NameError: name`` in a test cell, or None (an ordinary NameError)."""
    if name is None:
        return None
    if "case" not in user_ns:
        return f"`{name}` is not defined: {SETUP_HINT}, then the answer cells"
    if name in answer_functions:
        return f"`{name}` is not defined: run the answer cell above first (the one that defines {name})"
    return None


def install_name_error_handler(answer_functions: set[str]) -> bool:
    """In IPython, show a test cell's NameError as which cell to run. False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False

    def handler(self, etype, value, tb, tb_offset=None):
        message = name_error_message(getattr(value, "name", None), self.user_ns, answer_functions)
        if message is None:
            self.showtraceback((etype, value, tb), tb_offset=tb_offset)
        else:
            self.showtraceback((StudentMessage, StudentMessage(message), None))
        return None

    shell.set_custom_exc((NameError,), handler)
    return True


def matmul_advice(
    rows: int, inner: int, other_inner: int, columns: int, inputs: Mapping[str, tuple[int, ...]] | None
) -> str:
    """Why ``(rows × inner) @ (other_inner × columns)`` fails, with its operands named when
    their shapes say which tensors (or transposes) they are, and the fix their sizes allow."""
    first, second = _named((rows, inner), inputs), _named((other_inner, columns), inputs)
    head = (
        f"the inner sizes of a matrix product must agree: {first or 'the first operand'} is "
        f"{rows}×{inner} and {second or 'the second operand'} is {other_inner}×{columns} "
        f"({inner} ≠ {other_inner})"
    )
    if inner == columns:
        return f"{head} — {_transpose(second, 'the second operand')}"
    if rows == other_inner:
        return f"{head} — {_transpose(first, 'the first operand')}"
    if columns == rows:
        return f"{head} — the operands are in the wrong order: swap them"
    return f"{head} — a missing or extra .T, or the operands in the wrong order"


def _transpose(name: str | None, otherwise: str) -> str:
    if name is None:
        return f"transpose {otherwise} (.T)"
    first = name.split(" or ")[0]
    fixed = first.removesuffix(".T") if first.endswith(".T") else f"{first}.T"
    return f"use {fixed} where you have {first}"


def _named(shape: tuple[int, int], inputs: Mapping[str, tuple[int, ...]] | None) -> str | None:
    """The tensor of this shape (``W2``) or whose transpose it is (``W2.T``), when at most two
    of the function's tensors have it (``W2 or params['W2']``)."""
    exact = [name for name, s in (inputs or {}).items() if s == shape]
    flipped = [f"{name}.T" for name, s in (inputs or {}).items() if s == shape[::-1]]
    names = sorted(exact or flipped, key=lambda name: "[" in name)  # the function's own names first
    return " or ".join(names) if 1 <= len(names) <= 2 else None
