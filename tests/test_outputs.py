"""Byte caps on a notebook's outputs (classroom/outputs.py): what they keep, and that they
never change the grade nbgrader reads from a test cell's outputs."""

from __future__ import annotations

import itertools

import pytest
from nbformat.v4 import new_code_cell, new_output
from nbgrader.utils import determine_grade

from backprop_ninja.grading.outputs import capped, decides_grade, keep, weight

LIMIT = 1024
BUDGET = 4 * LIMIT


def stream(text: str, name: str = "stdout"):
    return new_output("stream", name=name, text=text)


def error(evalue: str = "dlogits: wrong"):
    return new_output("error", ename="AssertionError", evalue=evalue, traceback=["line 1", evalue])


def result(text: str):
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


def display(text: str):
    return new_output("display_data", data={"text/plain": text})


def graded(outputs: list) -> float | None:
    """nbgrader's grade for a 5-point test cell with these outputs."""
    cell = new_code_cell("check()", outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 5, "grade_id": "test"}
    return determine_grade(cell)[0]


def kept_after(outputs: list, received: int = 0) -> list:
    kept: list = []
    for output in outputs:
        received = keep(output, kept, received, LIMIT, BUDGET)
    return kept


@pytest.mark.parametrize(
    "big", [stream("x" * 10 * LIMIT), stream("x" * 10 * LIMIT, "stderr"), error("x" * 10 * LIMIT)]
)
def test_an_oversized_output_is_shortened_to_its_own_kind(big):
    short = capped(big, LIMIT)
    assert weight(short) <= LIMIT
    assert (short.output_type, short.get("name")) == (big.output_type, big.get("name"))
    assert "[output removed by the grader: over 1 KiB]" in str(short)


def test_a_result_too_big_to_read_as_partial_credit_fails_closed():
    assert graded([result("a" * 10 * LIMIT)]) == 5  # nbgrader: not a number, full credit
    assert graded([capped(result("a" * 10 * LIMIT), LIMIT)]) == 0


def test_an_oversized_display_becomes_a_notice():
    short = capped(display("y" * 10 * LIMIT), LIMIT)
    assert short.output_type == "stream"
    assert short.text.startswith("[output removed by the grader: an output over")
    assert not decides_grade(short)


def test_past_the_budget_only_what_decides_a_grade_is_kept_with_one_notice():
    flood = [display("y" * (LIMIT - 100)) for _ in range(10)]
    kept = kept_after([*flood, stream("warn", "stderr"), stream("warn again", "stderr"), error(), *flood])
    kinds = [(o.output_type, o.get("name")) for o in kept]
    assert kinds.count(("display_data", None)) == 4  # the budget's worth
    assert kinds.count(("stream", "stderr")) == 1
    assert kinds.count(("error", None)) == 1
    assert sum("this notebook's outputs are over" in o.get("text", "") for o in kept) == 1


# Every short sequence of the outputs a test cell can show, after a flood that used the budget
# or not (a result over the limit, which fails closed, is tested above).
CASES = [stream("ok"), stream("warning", "stderr"), error(), result("2.5"), result("0"), display("z" * 900)]


@pytest.mark.parametrize("outputs", [list(c) for n in (1, 2, 3) for c in itertools.permutations(CASES, n)])
def test_capping_never_changes_the_grade_nbgrader_reads(outputs):
    assert graded(kept_after(outputs, received=BUDGET)) == graded(outputs)
    assert graded(kept_after(outputs)) == graded(outputs)
