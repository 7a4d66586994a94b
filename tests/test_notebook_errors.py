"""Issue 13, point 4 and 5, in a real kernel: no traceback reaches a student, and the scan's
findings show in the test cell — out-of-order cells, errors inside an answer, autograd."""

from __future__ import annotations

import os

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from backprop_ninja.course import REPO_ROOT

pytestmark = pytest.mark.notebooks

TEST_B2 = 'from backprop_ninja.testing import ATOMIC, test_on\ntest_on(ATOMIC["b2"], grad_b2, case)'
TEST_H = 'from backprop_ninja.testing import ATOMIC, test_on\ntest_on(ATOMIC["h"], grad_h, case)'
TEST_HPREACT = (
    'from backprop_ninja.testing import ATOMIC, test_on\ntest_on(ATOMIC["hpreact"], grad_hpreact, case)'
)
SETUP = """\
import torch
import torch.nn.functional as F
from backprop_ninja.cases import Case, CaseSpec
case = Case.fresh(CaseSpec(seed=5, batch_size=9, n_hidden=6))
logits, Yb = case.reference.values["logits"], case.Yb
"""
CELLS = {
    "before_setup": TEST_B2,
    "setup": SETUP,
    "before_answer": TEST_B2,
    "answer_h": "def grad_h(W2, dlogits):\n    n = dlogits.shape[0]\n    return dlogits @ W2",
    "test_h": TEST_H,
    "answer_hpreact": "def grad_hpreact(hpreact, h, dh):\n    return hpreact.grad.clone() * dh",
    "test_hpreact": TEST_HPREACT,
    "answer_b2": (
        "def grad_b2(dlogits):\n    return dlogits.sum(0)\n\n"
        "leaf = logits.clone().requires_grad_()\nF.cross_entropy(leaf, Yb).backward()\n"
        "print(torch.allclose(grad_b2(leaf.grad), leaf.grad.sum(0)))"
    ),
    "test_b2": TEST_B2,
    "no_data": "from pathlib import Path\nfrom backprop_ninja import data\ndata.load_splits(Path('/nonexistent/names.txt'))",
    "ordinary_name_error": "print(undefined_name)",
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, list]:
    nb = new_notebook(cells=[new_code_cell(source) for source in CELLS.values()])
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}},
    )
    client.execute(env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")})
    return {name: cell.outputs for name, cell in zip(CELLS, nb.cells)}


def error_line(outputs) -> str:
    (error,) = [o for o in outputs if o.output_type == "error"]
    assert len(error.traceback) == 1, error.traceback  # one line, no traceback
    assert error.traceback[0].startswith("❌")
    return error.traceback[0]


def text(outputs) -> str:
    """What the cell printed and displayed (a verdict is a display_data whose text is its line)."""
    return "".join(
        o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
        for o in outputs
    )


def test_a_test_cell_before_the_setup_cell_says_run_the_setup_cell(outputs):
    assert "run the setup cell at the top" in error_line(outputs["before_setup"])


def test_a_test_cell_before_its_answer_cell_says_run_the_answer_cell(outputs):
    assert "run the answer cell above first" in error_line(outputs["before_answer"])


def test_an_error_in_the_answer_is_one_line_with_its_line_and_cause(outputs):
    line = error_line(outputs["test_h"])
    assert "grad_h raised RuntimeError" in line
    assert "(line 3 of its cell)" in line
    assert "inner sizes of a matrix product" in line


def test_autograd_in_the_function_fails_with_the_finding_not_an_attribute_error(outputs):
    line = error_line(outputs["test_hpreact"])
    assert "uses autograd" in line
    assert "AttributeError" not in line


def test_a_comparison_in_the_answer_cell_passes_with_a_note_to_move_it(outputs):
    assert not [o for o in outputs["test_b2"] if o.output_type == "error"]
    out = text(outputs["test_b2"])
    assert "✅ db2" in out
    assert "move that comparison into a cell of its own" in out


def test_a_missing_data_file_is_one_line_with_the_command(outputs):
    assert "make data" in error_line(outputs["no_data"])


def test_an_ordinary_name_error_keeps_its_usual_traceback(outputs):
    (error,) = [o for o in outputs["ordinary_name_error"] if o.output_type == "error"]
    assert error.ename == "NameError"
    assert len(error.traceback) > 1
