"""Small nbgrader notebooks for the integrity and verifier tests (and the tamper suite).

A *source* notebook has the course's layout: a locked setup cell, one answer cell per
function (grade_id = the function's name) and a locked test cell per graded test. A
*submission* is the same notebook with the answer cells filled in and, optionally, cells
the student added. The answers here are the lecture's formulas; the honest variants are
other correct formulations that must keep full marks.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from backprop_ninja.course import DEPENDENT_TESTS
from backprop_ninja.judge.exercises import GRADED_TESTS

SETUP = """\
import math
import torch
import torch.nn.functional as F
from backprop_ninja.testing import (test_on, test_hidden, test_training, stage_report, ATOMIC,
                                    MANUAL_BACKWARD)
from backprop_ninja.cases import Case
case = None  # the notebook's batch, built here in the real notebooks
"""


def _code(source: str) -> str:
    return textwrap.dedent(source).strip("\n") + "\n"


ANSWERS = {
    name: _code(code)
    for name, code in {
        "grad_logprobs": """
        def grad_logprobs(logprobs, Yb):
            n = logprobs.shape[0]
            d = torch.zeros_like(logprobs)
            d[range(n), Yb] = -1.0 / n
            return d
        """,
        "grad_probs": "def grad_probs(probs, dlogprobs):\n    return (1.0 / probs) * dlogprobs",
        "grad_counts_sum_inv": """
        def grad_counts_sum_inv(counts, dprobs):
            return (counts * dprobs).sum(1, keepdim=True)
        """,
        "grad_counts_sum": """
        def grad_counts_sum(counts_sum, dcounts_sum_inv):
            return -counts_sum**-2 * dcounts_sum_inv
        """,
        "grad_counts": """
        def grad_counts(counts_sum_inv, dprobs, dcounts_sum):
            d = counts_sum_inv * dprobs
            d += torch.ones_like(dprobs) * dcounts_sum
            return d
        """,
        "grad_norm_logits": "def grad_norm_logits(counts, dcounts):\n    return counts * dcounts",
        "grad_logit_maxes": """
        def grad_logit_maxes(dnorm_logits):
            return -dnorm_logits.sum(1, keepdim=True)
        """,
        "grad_logits": """
        def grad_logits(logits, dnorm_logits, dlogit_maxes):
            d = dnorm_logits.clone()
            d += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
            return d
        """,
        "grad_h": "def grad_h(W2, dlogits):\n    return dlogits @ W2.T",
        "grad_W2": "def grad_W2(h, dlogits):\n    return h.T @ dlogits",
        "grad_b2": "def grad_b2(dlogits):\n    return dlogits.sum(0)",
        "grad_hpreact": "def grad_hpreact(hpreact, h, dh):\n    return (1.0 - h**2) * dh",
        "grad_bngain": "def grad_bngain(bnraw, dhpreact):\n    return (bnraw * dhpreact).sum(0, keepdim=True)",
        "grad_bnbias": "def grad_bnbias(dhpreact):\n    return dhpreact.sum(0, keepdim=True)",
        "grad_bnraw": "def grad_bnraw(bngain, dhpreact):\n    return bngain * dhpreact",
        "grad_bnvar_inv": "def grad_bnvar_inv(bndiff, dbnraw):\n    return (bndiff * dbnraw).sum(0, keepdim=True)",
        "grad_bnvar": "def grad_bnvar(bnvar, dbnvar_inv):\n    return -0.5 * (bnvar + 1e-5) ** -1.5 * dbnvar_inv",
        "grad_bndiff2": """
        def grad_bndiff2(bndiff2, dbnvar):
            n = bndiff2.shape[0]
            return 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar
        """,
        "grad_bndiff": """
        def grad_bndiff(bndiff, bnvar_inv, dbnraw, dbndiff2):
            d = bnvar_inv * dbnraw
            d += 2 * bndiff * dbndiff2
            return d
        """,
        "grad_bnmeani": "def grad_bnmeani(dbndiff):\n    return -dbndiff.sum(0, keepdim=True)",
        "grad_hprebn": """
        def grad_hprebn(hprebn, dbndiff, dbnmeani):
            n = hprebn.shape[0]
            d = dbndiff.clone()
            d += 1.0 / n * torch.ones_like(hprebn) * dbnmeani
            return d
        """,
        "grad_embcat": "def grad_embcat(W1, dhprebn):\n    return dhprebn @ W1.T",
        "grad_W1": "def grad_W1(embcat, dhprebn):\n    return embcat.T @ dhprebn",
        "grad_b1": "def grad_b1(dhprebn):\n    return dhprebn.sum(0)",
        "grad_emb": "def grad_emb(emb, dembcat):\n    return dembcat.view(emb.shape)",
        "grad_C": """
        def grad_C(C, Xb, demb):
            dC = torch.zeros_like(C)
            dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
            return dC
        """,
        "cross_entropy_backward": """
        def cross_entropy_backward(logits, Yb):
            n = logits.shape[0]
            d = F.softmax(logits, 1)
            d[range(n), Yb] -= 1
            return d / n
        """,
        "batchnorm_backward": """
        def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
            n = dhpreact.shape[0]
            return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                             - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
        """,
    }.items()
}

ANSWERS["manual_backward"] = (
    ANSWERS["cross_entropy_backward"]
    + ANSWERS["batchnorm_backward"]
    + _code("""
    def manual_backward(params, cache, Xb, Yb):
        dlogits = cross_entropy_backward(cache["logits"], Yb)
        dh = dlogits @ params["W2"].T
        dW2 = cache["h"].T @ dlogits
        db2 = dlogits.sum(0)
        dhpreact = (1 - cache["h"]**2) * dh
        dbngain = (cache["bnraw"] * dhpreact).sum(0, keepdim=True)
        dbnbias = dhpreact.sum(0, keepdim=True)
        dhprebn = batchnorm_backward(dhpreact, params["bngain"], cache["bnraw"], cache["bnvar_inv"])
        dembcat = dhprebn @ params["W1"].T
        dW1 = cache["embcat"].T @ dhprebn
        db1 = dhprebn.sum(0)
        demb = dembcat.view(cache["emb"].shape)
        dC = torch.zeros_like(params["C"])
        dC.index_add_(0, Xb.view(-1), demb.view(-1, params["C"].shape[1]))
        return dict(C=dC, W1=dW1, b1=db1, W2=dW2, b2=db2, bngain=dbngain, bnbias=dbnbias)
    """)
)

# Other correct formulations (issue 5, point 5), as (function, code). No function appears
# twice within one round, so that a round can be one submission.
HONEST_ROUNDS: tuple[dict[str, str], ...] = (
    {
        "grad_logits": """
            def grad_logits(logits, dnorm_logits, dlogit_maxes):
                mask = torch.zeros_like(logits).scatter_(1, logits.argmax(1, keepdim=True), 1.0)
                return dnorm_logits + mask * dlogit_maxes
            """,
        "grad_C": """
            def grad_C(C, Xb, demb):
                dC = torch.zeros_like(C)
                for k in range(Xb.shape[0]):
                    for j in range(Xb.shape[1]):
                        ix = Xb[k, j]
                        dC[ix] += demb[k, j]
                return dC
            """,
        "grad_hpreact": """
            def grad_hpreact(hpreact, h, dh):
                return (1 - torch.tanh(hpreact)**2) * dh
            """,
        "grad_probs": "def grad_probs(probs, dlogprobs):\n    return probs**-1 * dlogprobs",
        "grad_counts_sum": """
            def grad_counts_sum(counts_sum, dcounts_sum_inv):
                return -1 / counts_sum**2 * dcounts_sum_inv
            """,
        "grad_counts_sum_inv": """
            def grad_counts_sum_inv(counts, dprobs):
                return (counts * dprobs).sum(1)[:, None]
            """,
        "grad_bnvar_inv": """
            def grad_bnvar_inv(bndiff, dbnraw):
                return (bndiff * dbnraw).sum(0).unsqueeze(0)
            """,
        "grad_b2": "grad_b2 = lambda dlogits: dlogits.sum(0)",
    },
    {
        "grad_logits": """
            def grad_logits(logits, dnorm_logits, dlogit_maxes):
                n = logits.shape[0]
                grad = dnorm_logits.clone()
                grad[range(n), logits.argmax(1)] += dlogit_maxes.view(-1)
                return grad
            """,
        "grad_C": """
            def grad_C(C, Xb, demb):
                dC = torch.zeros_like(C)
                dC.index_put_((Xb.flatten(),), demb.flatten(0, 1), accumulate=True)
                return dC
            """,
        "grad_hpreact": """
            @torch.no_grad()
            def grad_hpreact(hpreact, h, dh):
                with torch.no_grad():
                    local = 1 - h * h
                return local * dh
            """,
        "grad_probs": "def grad_probs(probs, dlogprobs):\n    return dlogprobs / probs",
        "grad_counts_sum_inv": """
            import numpy as np

            def grad_counts_sum_inv(counts, dprobs):
                total = (counts * dprobs).sum(dim=1).view(-1, 1)
                assert np.isfinite(total.numpy()).all()
                return total
            """,
        "grad_bngain": """
            from torch.nn import functional as F

            def _column_sums(x):
                return x.sum(0, keepdim=True)

            def grad_bngain(bnraw, dhpreact):
                return _column_sums(bnraw * dhpreact)
            """,
        "grad_logprobs": """
            def grad_logprobs(logprobs, Yb):
                n = logprobs.shape[0]
                return -F.one_hot(Yb, logprobs.shape[1]).to(logprobs.dtype) / n
            """,
    },
)
HONEST_ROUNDS = tuple({name: _code(code) for name, code in r.items()} for r in HONEST_ROUNDS)

# Cells an honest student may add: the lecture's own comparison with autograd, plots,
# a training loop, timing and help.
HONEST_ADDED_CELLS = tuple(
    _code(c)
    for c in (
        """
    import matplotlib.pyplot as plt
    plt.rcParams["figure.figsize"] = (8, 4)
    logits = torch.randn(4, 5, requires_grad=True)
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    print(torch.allclose(logits.grad, cross_entropy_backward(logits.detach(), torch.tensor([0, 1, 2, 3]))))
    """,
        """
    params = {"W": torch.randn(3, 3)}
    grads = {"W": torch.ones(3, 3)}
    for name in params:
        params[name] -= 0.1 * grads[name]
    for p in params.values():
        p.grad = None
    """,
        """
    %time out = grad_b1(torch.ones(3, 2))
    %matplotlib inline
    grad_b1?
    names = [n for n in globals() if n.startswith("grad_")]
    report = stage_report(["b1"], globals(), case)
    """,
        """
    %%time
    total = sum(i * i for i in range(10))
    """,
    )
)


# ------------------------------------------------------------------------ cell makers
def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: float = 0) -> dict:
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked, "schema_version": 3}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def answer_cell(grade_id: str, source: str):
    return new_code_cell(source, metadata=_meta(grade_id, solution=True, grade=False, locked=False))


def grade_cell(grade_id: str, source: str, points: float = 1):
    return new_code_cell(
        source, metadata=_meta(grade_id, solution=False, grade=True, locked=True, points=points)
    )


def setup_cell(source: str = SETUP):
    return new_code_cell(source, metadata=_meta("setup", solution=False, grade=False, locked=True))


def functions_of(notebook_name: str) -> list[str]:
    """The answer functions of a notebook, in test order, each once."""
    return list(dict.fromkeys(e.function for e in GRADED_TESTS[notebook_name].values()))


def build_notebook(notebook_name: str, answers: dict[str, str] | None = None, added: tuple[str, ...] = ()):
    """A notebook in the course's layout; ``answers`` maps function → answer cell source
    (missing ones get the source's stub), ``added`` are cells the student added at the end."""
    answers = answers or {}
    nb = new_notebook()
    nb.cells.append(new_markdown_cell(f"# {notebook_name}"))
    nb.cells.append(setup_cell())
    tests = GRADED_TESTS[notebook_name]
    for function in functions_of(notebook_name):
        stub = f"def {function}(*args):\n    raise NotImplementedError\n"
        nb.cells.append(answer_cell(function, answers.get(function, stub)))
        for grade_id, exercise in tests.items():
            if exercise.function == function:
                nb.cells.append(grade_cell(grade_id, f"test_on(EXERCISE, {function}, case)"))
    for grade_id, function in DEPENDENT_TESTS.get(notebook_name, {}).items():
        nb.cells.append(grade_cell(grade_id, f"test_training({function})", points=3))
    for source in added:
        nb.cells.append(new_code_cell(source))
    return nb


def write(nb, path: Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return Path(path)


def source_notebook(directory: Path, notebook_name: str) -> Path:
    """The instructor's version (stubs in the answer cells) at directory/source/<name>.ipynb."""
    path = Path(directory) / "source" / f"{notebook_name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(build_notebook(notebook_name), path)


def submission(
    directory: Path,
    notebook_name: str,
    answers: dict[str, str] | None = None,
    added: tuple[str, ...] = (),
    name: str = "submitted",
) -> Path:
    path = Path(directory) / name / f"{notebook_name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(build_notebook(notebook_name, answers, added), path)


def reference_answers(notebook_name: str) -> dict[str, str]:
    return {function: ANSWERS[function] for function in functions_of(notebook_name)}
