"""The static integrity scan: what it flags, what it must leave alone, which tests it voids."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from submission_notebooks import (
    ANSWERS,
    HONEST_ADDED_CELLS,
    HONEST_ROUNDS,
    build_notebook,
    reference_answers,
    source_notebook,
    submission,
    write,
)

from backprop_ninja.integrity import (
    KINDS,
    Finding,
    affected_tests,
    graded_test_ids,
    scan_notebook,
)
from backprop_ninja.judge.exercises import GRADED_TESTS

NB1, NB4 = "1_atomic_backprop", "4_full_training"
ALL_NB1 = set(GRADED_TESTS[NB1])
ALL_NB4 = set(GRADED_TESTS[NB4]) | {"test_training"}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The source notebooks, and a function that scans a submission built from answers."""
    root = tmp_path_factory.mktemp("course")
    sources = {nb: source_notebook(root, nb) for nb in (NB1, NB4)}
    counter = iter(range(10**6))

    def scan(answers=None, added=(), nb=NB1):
        path = submission(
            root, nb, {**reference_answers(nb), **(answers or {})}, tuple(added), name=f"s{next(counter)}"
        )
        return scan_notebook(path, sources[nb])

    scan.sources, scan.root = sources, root  # type: ignore[attr-defined]  # for the tests that need them
    return scan


def probs_answer(body: str, before: str = "") -> dict[str, str]:
    """grad_probs whose body is ``body`` (indented for you), after module-level ``before``."""
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return {"grad_probs": f"{before}def grad_probs(probs, dlogprobs):\n{indented}\n"}


# ------------------------------------------------------------------------------ autograd
AUTOGRAD = {
    "backward": "p = probs.clone()\np.log().backward(dlogprobs)\nreturn p.grad",
    "requires_grad_": "p = probs.detach().requires_grad_()\nreturn p",
    "requires_grad=": "w = torch.ones(1, requires_grad=True)\nreturn dlogprobs / probs",
    "autograd.grad": "return torch.autograd.grad(probs.log(), probs, dlogprobs)[0]",
    "from autograd": "from torch.autograd import grad as g\nreturn dlogprobs / probs",
    "torch.func": "return torch.func.vjp(torch.log, probs)[1](dlogprobs)[0]",
    "from torch.func": "from torch.func import jacrev\nreturn dlogprobs / probs",
    "functorch": "import functorch\nreturn dlogprobs / probs",
    "enable_grad": "with torch.enable_grad():\n    pass\nreturn dlogprobs / probs",
    "set_grad_enabled": "torch.set_grad_enabled(True)\nreturn dlogprobs / probs",
    "inference_mode": "with torch.inference_mode(False):\n    return dlogprobs / probs",
    "getattr grad": 'return getattr(probs, "grad")',
    "functional": "return torch.autograd.functional.jacobian(torch.log, probs)",
    "from torch import": "from torch import enable_grad\nreturn dlogprobs / probs",
    "grad_fn": "return dlogprobs / probs if probs.grad_fn is None else probs",
    "autograd name in a string": 'kwargs = {"requires_grad": True}\nreturn dlogprobs / probs',
    "forward_ad": "with torch.autograd.forward_ad.dual_level():\n    return dlogprobs / probs",
}


@pytest.mark.parametrize("body", AUTOGRAD.values(), ids=AUTOGRAD.keys())
def test_autograd_in_an_answer_is_flagged_and_voids_only_its_test(course, body):
    findings = course(probs_answer(body))
    assert findings
    assert {f.kind for f in findings} == {"autograd"}
    assert all(f.functions == ("grad_probs",) and not f.whole_notebook for f in findings)
    assert set(affected_tests(findings, NB1)) == {"test_dprobs"}
    assert "grad_probs uses autograd" in findings[0].message
    assert "by hand" in findings[0].message


def test_autograd_subclass_of_function_is_flagged(course):
    answers = {"grad_h": "class Square(torch.autograd.Function):\n    pass\n\n" + ANSWERS["grad_h"]}
    findings = course(answers)
    assert {f.kind for f in findings} == {"autograd"}
    assert set(affected_tests(findings, NB1)) == {"test_dh"}


# --------------------------------------------------------------------------- monkeypatch
MONKEYPATCH_IN_ANSWER = {
    "torch.allclose": "torch.allclose = lambda *a, **k: True\n",
    "F.cross_entropy": "F.cross_entropy = lambda *a, **k: 0\n",
    "numpy": "import numpy as np\nnp.allclose = lambda *a, **k: True\n",
    "del": "del torch.allclose\n",
    "Tensor.__eq__": "torch.Tensor.__eq__ = lambda a, b: True\n",
    "setattr": 'setattr(torch, "allclose", print)\n',
    "delattr": 'delattr(F, "one_hot")\n',
    "math": "math.isclose = lambda *a, **k: True\n",
    "augassign": "torch.nn.functional.x = 0\ntorch.nn.functional.x += 1\n",
}
MONKEYPATCH_ADDED = {
    "test_on": "test_on = lambda *a, **k: None\n",
    "def test_hidden": "def test_hidden(*args, **kwargs):\n    pass\n",
    "case": 'case.reference.grads["probs"] = 0\n',
    "course package": "import backprop_ninja.judge.check\nbackprop_ninja.judge.check.check = lambda *a, **k: True\n",
    "F rebound": "F = torch\n",
    "torch rebound by import": "import numpy as torch\n",
    "global": "def sneaky():\n    global test_training\n    test_training = print\n",
    "tuple target": "torch.allclose, x = print, 1\n",
    "alias": "t = torch.nn.functional\nt.one_hot = print\n",
    "alias in a function": "def f():\n    t = torch\n    t.allclose = print\n",
    "Tensor alias": "T = torch.Tensor\nT.add = print\n",
    "walrus": "(torch := None)\n",
    "test registry": "ATOMIC['probs'] = None\n",
}


@pytest.mark.parametrize("code", MONKEYPATCH_IN_ANSWER.values(), ids=MONKEYPATCH_IN_ANSWER.keys())
def test_monkeypatch_in_an_answer_cell_voids_the_whole_notebook(course, code):
    findings = course(probs_answer("return dlogprobs / probs", before=code))
    assert "monkeypatch" in {f.kind for f in findings}
    patch = next(f for f in findings if f.kind == "monkeypatch")
    assert patch.whole_notebook
    assert patch.line >= 1
    assert "may not change torch, numpy, builtins, the course package or the tests" in patch.message
    assert set(affected_tests(findings, NB1)) == ALL_NB1


@pytest.mark.parametrize("code", MONKEYPATCH_ADDED.values(), ids=MONKEYPATCH_ADDED.keys())
def test_monkeypatch_in_an_added_cell_voids_the_whole_notebook(course, code):
    findings = course(added=[code])
    assert "monkeypatch" in {f.kind for f in findings}
    assert all(f.cell == "added cell #1" for f in findings)
    assert set(affected_tests(findings, NB1)) == ALL_NB1


def test_the_message_names_what_was_replaced(course):
    (finding,) = course(probs_answer("return dlogprobs / probs", before="torch.allclose = print\n"))
    assert finding == Finding("grad_probs", 1, "monkeypatch", finding.message, (), True)
    assert "`torch.allclose`" in finding.message


# ------------------------------------------------------------------------------- dynamic
DYNAMIC_IN_ANSWER = {
    "exec": 'exec("x = 1")\n',
    "eval": 'eval("1")\n',
    "compile": 'compile("x", "f", "exec")\n',
    "__import__": '__import__("math")\n',
    "importlib": "import importlib\n",
    "getattr computed": 'name = "all" + "close"\nf = getattr(torch, name)\n',
    "globals write": 'globals()["torch"] = None\n',
    "globals update": "globals().update(x=1)\n",
    "locals write": 'locals()["x"] = 1\n',
    "vars": "v = vars(torch)\n",
    "__builtins__": "b = __builtins__\n",
    "__dict__": "d = F.__dict__\n",
    "__globals__": "g = print.__globals__ if hasattr(print, '__globals__') else None\n",
    "__subclasses__": "s = ().__class__.__base__.__subclasses__()\n",
    "__code__": "c = (lambda: 0).__code__\n",
    "gc": "import gc\n",
    "inspect": "import inspect\n",
    "ctypes": "import ctypes\n",
    "sys": "import sys\n",
    "os": "from os import path\n",
    "subprocess": "import subprocess\n",
    "pickle": "import pickle\n",
    "builtins": "import builtins\n",
    "torch._C": "torch._C._set_grad_enabled(True)\n",
    "torch.os": "p = torch.os.getcwd()\n",
    "open": 'open("results.pt", "wb")\n',
    "torch.library": 'lib = torch.library.Library("aten", "IMPL")\n',
    "overrides": "from torch.overrides import TorchFunctionMode\n",
    "dispatch": "from torch.utils._python_dispatch import TorchDispatchMode\n",
    "Tensor subclass": "class Liar(torch.Tensor):\n    pass\n",
    "unpickling": "x = torch.load('f.pt', weights_only=False)\n",
    "stack walking": (
        "def peek():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
        "        return e.__traceback__.tb_frame.f_back.f_locals\n"
    ),
    "__torch_function__": "class Mode:\n    def __torch_function__(self, *a):\n        return True\n",
    "getattr alias": "look = getattr\nf = look(torch, 'allclose')\n",
    "getattr passed around": "import functools\nf = functools.reduce(getattr, ['nn', 'functional'], torch)\n",
    "attrgetter alias": "from operator import attrgetter as ag\nf = ag('allclose')(torch)\n",
}
DYNAMIC_ADDED = {
    "shell": "!ls\n",
    "run magic": "%run other.py\n",
    "bash cell": "%%bash\nls\n",
    "get_ipython": 'get_ipython().run_cell("x = 1")\n',
    "shell assignment": "files = !ls\n",
    "exec": 'exec("torch.allclose = print")\n',
    "config magic": "%config InteractiveShell.ast_node_interactivity = 'all'\n",
    "numpy pickle": "import numpy as np\nx = np.load('f.npy', allow_pickle=True)\n",
    "os.system": "import os\nos.system('ls')\n",
    "file write": "with open('../gradebook.db', 'wb') as f:\n    f.write(b'')\n",
    "file write, mode keyword": "open('x.txt', mode='a').write('x')\n",
    "path write": "from pathlib import Path\nPath('x').write_text('x')\n",
    "delete": "from pathlib import Path\nPath('../gradebook.db').unlink()\n",
}


@pytest.mark.parametrize("code", DYNAMIC_IN_ANSWER.values(), ids=DYNAMIC_IN_ANSWER.keys())
def test_dynamic_tricks_in_an_answer_cell_void_the_whole_notebook(course, code):
    findings = course(probs_answer("return dlogprobs / probs", before=code))
    assert "dynamic" in {f.kind for f in findings}
    assert set(affected_tests(findings, NB1)) == ALL_NB1


@pytest.mark.parametrize("code", DYNAMIC_ADDED.values(), ids=DYNAMIC_ADDED.keys())
def test_dynamic_tricks_in_an_added_cell_void_the_whole_notebook(course, code):
    findings = course(added=[code])
    assert "dynamic" in {f.kind for f in findings}
    assert set(affected_tests(findings, NB1)) == ALL_NB1


def test_dynamic_tricks_inside_a_function_are_found_too(course):
    findings = course(probs_answer('exec("x = 1")\nreturn dlogprobs / probs'))
    assert [f.kind for f in findings] == ["dynamic"]
    assert findings[0].line == 2


# ---------------------------------------------------------------------- forbidden imports
FORBIDDEN = {
    "package": "import backprop_ninja\n",
    "reference": "from backprop_ninja.reference import reference_gradients\n",
    "scipy": "import scipy.special\n",
    "relative": "from . import helpers\n",
    "pathlib": "import pathlib\n",
}


@pytest.mark.parametrize("code", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_imports_outside_the_allow_list_are_flagged_in_answer_cells(course, code):
    findings = course(probs_answer("return dlogprobs / probs", before=code))
    assert [f.kind for f in findings] == ["forbidden_import"]
    assert "may import only torch (and torch.nn.functional), math, numpy" in findings[0].message
    assert set(affected_tests(findings, NB1)) == {"test_dprobs"}


def test_an_added_cell_may_import_the_course_package(course):
    assert course(added=["from backprop_ninja.reference import reference_gradients\n"]) == []


def test_a_module_level_import_voids_every_function_that_uses_it(course):
    answers = {
        **probs_answer(
            "return dlogprobs / probs", before="from backprop_ninja.reference import local_gradient\n"
        ),
        "grad_h": "def grad_h(W2, dlogits):\n    return local_gradient(W2, dlogits)\n",
    }
    findings = course(answers)
    assert set(affected_tests(findings, NB1)) == {"test_dprobs", "test_dh"}


# -------------------------------------------------------------------------------- syntax
def test_an_answer_cell_that_does_not_parse_voids_its_function(course):
    findings = course({"grad_h": "def grad_h(W2, dlogits:\n    return dlogits @ W2.T\n"})
    assert [(f.kind, f.cell) for f in findings] == [("syntax", "grad_h")]
    assert "does not parse" in findings[0].message
    assert "line 1" in findings[0].message
    assert set(affected_tests(findings, NB1)) == {"test_dh"}


def test_an_added_cell_that_does_not_parse_is_reported_but_voids_nothing(course):
    findings = course(added=["for i in range(3)\n    print(i)\n"])
    assert [(f.kind, f.cell) for f in findings] == [("syntax", "added cell #1")]
    assert affected_tests(findings, NB1) == {}


def test_a_cell_of_megabytes_is_refused_unread_and_voids_everything(course):
    """Parsing it would cost the trusted grader ~500 times its size in memory."""
    data_dump = "table = [" + "0," * 2_000_000 + "]\n"  # 4 MB of valid Python
    findings = course(added=[data_dump])
    assert [(f.kind, f.cell, f.whole_notebook) for f in findings] == [("unknown", "added cell #1", True)]
    assert "the cell is over 64 KiB of code: too large to check" in findings[0].message
    assert set(affected_tests(findings, NB1)) == ALL_NB1


def test_many_cells_under_the_cell_limit_are_refused_past_the_notebook_limit(course):
    cells = ["rows = [" + "0," * 30_000 + "]\n"] * 10  # 60 KB each, 600 KB in all
    findings = course(added=cells)
    assert findings
    assert all(f.whole_notebook for f in findings)
    assert "the notebook's own code is over 512 KiB" in findings[0].message
    assert findings[0].cell == "added cell #9"  # the first past 512 KiB; the others were read


def test_an_unreadable_notebook_is_one_finding_that_voids_everything(course, tmp_path):
    path = tmp_path / f"{NB1}.ipynb"
    path.write_text("{not json", encoding="utf-8")
    (finding,) = scan_notebook(path, course.sources[NB1])
    assert finding.kind == "syntax"
    assert finding.whole_notebook
    assert "JSON" in finding.message
    assert set(affected_tests([finding], NB1)) == ALL_NB1


def test_a_missing_source_notebook_is_a_configuration_error(course, tmp_path):
    path = submission(tmp_path, NB1, reference_answers(NB1))
    with pytest.raises(FileNotFoundError, match="source notebook"):
        scan_notebook(path, tmp_path / "nowhere.ipynb")


# --------------------------------------------------------------------------- honest code
def test_the_reference_answers_produce_no_finding(course):
    assert course() == []
    assert course(nb=NB4) == []


@pytest.mark.parametrize("round_", HONEST_ROUNDS, ids=[f"round{i}" for i in range(len(HONEST_ROUNDS))])
def test_equivalent_formulations_produce_no_finding(course, round_):
    assert course(round_) == []


@pytest.mark.parametrize(
    "cell", HONEST_ADDED_CELLS, ids=["autograd comparison", "training loop", "magics and help", "time cell"]
)
def test_what_an_honest_student_adds_produces_no_finding(course, cell):
    assert course(added=[cell]) == []


HONEST_SNIPPETS = {
    "local named grad": "grad = dlogprobs / probs\nreturn grad",
    "transpose": "return (dlogprobs.T / probs.T).T",
    "zeros_like and loops": (
        "d = torch.zeros_like(probs)\nfor i in range(probs.shape[0]):\n"
        "    d[i] += dlogprobs[i] / probs[i]\nreturn d"
    ),
    "x**-1": "return dlogprobs * probs**-1",
    "no_grad": "with torch.no_grad():\n    return dlogprobs / probs",
    "grad off": "torch.set_grad_enabled(False)\nreturn dlogprobs / probs",
    "requires_grad=False": "one = torch.ones(1, dtype=probs.dtype, requires_grad=False)\nreturn one * dlogprobs / probs",
    "detach clone": "return (dlogprobs / probs).detach().clone()",
    "docstring": '"""Like loss.backward() would, but by hand: d log p = dp / p."""\nreturn dlogprobs / probs',
    "getattr literal": 'div = getattr(torch, "div")\nreturn div(dlogprobs, probs)',
    "keepdim": "s = probs.sum(1, keepdim=True)\nreturn dlogprobs / probs + 0 * s",
    "dict comprehension": "parts = {k: v for k, v in dict(a=dlogprobs).items()}\nreturn parts['a'] / probs",
    "inference_mode": "with torch.inference_mode():\n    return dlogprobs / probs",
    "type hints": "x: torch.Tensor = dlogprobs\nreturn x / probs",
    "private helper": "return _safe_div(dlogprobs, probs)",
}


@pytest.mark.parametrize("body", HONEST_SNIPPETS.values(), ids=HONEST_SNIPPETS.keys())
def test_honest_code_produces_no_finding(course, body):
    before = (
        "import itertools\nfrom collections import defaultdict\nfrom math import sqrt\n"
        "EPS = 1e-12\n\ndef _safe_div(a, b):\n    return a / b\n\n"
    )
    assert course(probs_answer(body, before=before)) == []


def test_added_cells_may_read_files(course):
    code = (
        "from pathlib import Path\nwith open('names.txt') as f:\n    words = f.read().split()\n"
        "text = open('names.txt', 'r', encoding='utf-8').read()\nPath('names.txt').read_text()\n"
    )
    assert course(added=[code]) == []


def test_added_cells_may_read_the_environment_but_not_use_os_otherwise(course):
    harmless = (
        "import os\nimport sys\nfrom os import path\n"
        "print(os.environ.get('HOME'), os.environ['PATH'], os.path.join('a', 'b'),\n"
        "      path.exists('x'), sys.version, os.getcwd())\nsys.stdout.flush()\n"
    )
    assert course(added=[harmless]) == []
    for code, kind in (
        ("import os\nos.system('ls')\n", "dynamic"),
        ("from os import system\nsystem('ls')\n", "dynamic"),
        ("import sys\nsys.path.append('.')\n", "dynamic"),
        ("import os\nos.environ['X'] = '1'\n", "monkeypatch"),
        ("import sys\nsys.stdout = None\n", "monkeypatch"),
        ("import os\nf = os\n", "dynamic"),
    ):
        assert kind in {f.kind for f in course(added=[code])}, code


def test_unchanged_instructor_cells_are_course_code(course, tmp_path):
    """An unlocked cell of the source (no nbgrader metadata) is trusted while its text is
    the instructor's; once the student edits it, it is scanned like an added cell."""
    instructor = "import os\nsteps = int(os.environ.get('STEPS', '10')) if os.name else 0\nf = os\n"
    source = build_notebook(NB1)
    source.cells.insert(2, new_code_cell(instructor))
    source_path = write(source, tmp_path / "source" / f"{NB1}.ipynb")
    for text, expected in ((instructor, []), (instructor + "os.system('ls')\n", ["dynamic"])):
        nb = build_notebook(NB1, reference_answers(NB1))
        nb.cells.insert(2, new_code_cell(text))
        path = write(nb, tmp_path / f"sub{len(text)}" / f"{NB1}.ipynb")
        assert sorted({f.kind for f in scan_notebook(path, source_path)}) == expected


def test_a_student_may_reuse_an_imported_name_for_a_tensor(course):
    code = "from torch import tensor\ntensor = torch.zeros(3)\ntensor[0] = 1\n"
    assert course(added=[code]) == []


# -------------------------------------------------------------------- which tests, which cells
def test_a_helper_passes_its_finding_to_the_functions_that_call_it(course):
    answers = {
        "grad_h": "def _helper(x):\n    x.backward()\n    return x\n\n" + ANSWERS["grad_h"],
        "grad_W2": "def grad_W2(h, dlogits):\n    return _helper(h.T @ dlogits)\n",
    }
    findings = course(answers)
    assert [f.functions for f in findings] == [("_helper", "grad_W2")]
    assert set(affected_tests(findings, NB1)) == {"test_dW2"}


def test_module_level_autograd_voids_no_function_that_does_not_read_it(course):
    """Issue 13: a comparison with autograd beside the function says to move it, voids nothing."""
    answers = {
        "grad_b2": (
            "w = torch.ones(1, requires_grad=True)\n\n" + ANSWERS["grad_b2"] + "\n" + ANSWERS["grad_b1"]
        )
    }
    findings = course(answers)
    assert findings
    assert affected_tests(findings, NB1) == {}
    assert "move that comparison into a cell of its own" in findings[0].message


def test_module_level_autograd_voids_every_function_of_its_cell_when_one_reads_it(course):
    reader = "def grad_b1(dhprebn):\n    return dhprebn.sum(0) * w.detach()\n"
    answers = {"grad_b2": "w = torch.ones(1, requires_grad=True)\n\n" + ANSWERS["grad_b2"] + "\n" + reader}
    findings = course(answers)
    assert set(affected_tests(findings, NB1)) == {"test_db2", "test_db1"}


def test_in_notebook_4_the_training_test_follows_manual_backward(course):
    backward = ANSWERS["manual_backward"].replace("dW1 = ", "cache['h'].requires_grad_()\n    dW1 = ")
    findings = course({"manual_backward": backward}, nb=NB4)
    assert {f.kind for f in findings} == {"autograd"}
    assert set(affected_tests(findings, NB4)) == ALL_NB4
    findings = course(added=["torch.allclose = print\n"], nb=NB4)
    assert set(affected_tests(findings, NB4)) == ALL_NB4
    assert graded_test_ids(NB4)[-1] == "test_training"


def test_restored_cells_are_not_scanned(course):
    """nbgrader puts the source's text back into locked cells: what a student wrote there
    never runs, even if the metadata was edited to look like an answer."""
    nb = build_notebook(NB1, reference_answers(NB1))
    nb.cells[1].source = "torch.allclose = lambda *a, **k: True\n"  # the locked setup cell
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    test.source = "import os\nos.system('true')\n"
    test.metadata["nbgrader"]["solution"] = True  # pretending to be an answer cell
    path = write(nb, course.root / "restored" / f"{NB1}.ipynb")
    assert scan_notebook(path, course.sources[NB1]) == []


def test_forged_metadata_does_not_hide_an_added_cell(course):
    nb = build_notebook(NB1, reference_answers(NB1))
    nb.cells.append(
        new_code_cell(
            "torch.allclose = print\n",
            metadata={
                "nbgrader": {"grade_id": "my_setup", "locked": True, "solution": False, "grade": False}
            },
        )
    )
    path = write(nb, course.root / "forged" / f"{NB1}.ipynb")
    findings = scan_notebook(path, course.sources[NB1])
    assert [(f.kind, f.cell) for f in findings] == [("monkeypatch", "added cell #1")]


def test_an_answer_cell_stays_an_answer_when_its_solution_flag_is_removed(course):
    nb = build_notebook(NB1, reference_answers(NB1))
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "grad_probs")
    cell.source = "def grad_probs(probs, dlogprobs):\n    return probs.grad\n"
    cell.metadata["nbgrader"]["solution"] = False
    path = write(nb, course.root / "unflagged" / f"{NB1}.ipynb")
    findings = scan_notebook(path, course.sources[NB1])
    assert [(f.kind, f.cell) for f in findings] == [("autograd", "grad_probs")]


def test_findings_are_one_line_and_of_a_known_kind(course):
    findings = course(
        probs_answer("exec('x')\nreturn probs.grad", before="import os\n"),
        added=["!rm -rf /\n", "def broken(:\n"],
    )
    assert {f.kind for f in findings} <= set(KINDS)
    assert len(findings) >= 4
    for finding in findings:
        assert "\n" not in str(finding)
        assert "\n" not in finding.message
        assert str(finding).startswith(f"⚑ {finding.kind} ({finding.cell}")


def test_the_scan_never_writes_the_submission(course, tmp_path):
    path = submission(tmp_path, NB1, {"grad_probs": "torch.allclose = print\n"})
    before = path.read_bytes()
    scan_notebook(path, course.sources[NB1])
    assert path.read_bytes() == before


def test_command_line_prints_json(course, tmp_path, capsys):
    from backprop_ninja.integrity.__main__ import main

    path = submission(tmp_path, NB1, {"grad_probs": "torch.allclose = print\n"})
    assert main([str(path), str(course.sources[NB1]), "--json"]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["kind"] == "monkeypatch"
    assert finding["whole_notebook"] is True
    assert nbformat.read(str(path), as_version=4)  # still a notebook


# ------------------------------------------------- routes the answer cells' allowlist closes
DERIVATIVE_KERNELS = {
    "torch.ops": "return torch.ops.aten.log_backward(dlogprobs, probs)",
    "aten tanh_backward": "return torch.ops.aten.tanh_backward.default(dlogprobs, probs)",
    "getattr of a kernel name": 'k = getattr(torch.ops.aten, "nll_loss_backward")\nreturn k',
    "a kernel by another path": "return torch._C._nn.nll_loss_backward(dlogprobs, probs)",
    "embedding_dense_backward": "return torch.embedding_dense_backward(dlogprobs, probs, 27, -1, False)",
}


UNKNOWN_ROUTES = {
    "match over attributes": (
        "match probs:\n    case torch.Tensor(grad=g):\n        return g\nreturn dlogprobs / probs"
    ),
    "string annotation evaluated by typing": (
        "import typing\ndef f(x: 'probs.grad'): pass\nreturn typing.get_type_hints(f, locals())['x']"
    ),
    "an unknown torch corner": "return torch.library.custom_op('x')",
    "an attribute nobody knows": "return probs.totally_unknown_route(dlogprobs)",
}


CLOSED_ROUTES = {**DERIVATIVE_KERNELS, **UNKNOWN_ROUTES}


@pytest.mark.parametrize("body", CLOSED_ROUTES.values(), ids=CLOSED_ROUTES.keys())
def test_derivative_kernels_and_unknown_routes_are_findings_not_passes(course, body):
    """PyTorch's own derivative kernels, and routes nobody knows: private paths and some
    routes void the whole notebook, the answer's test in any case."""
    findings = course(probs_answer(body))
    assert findings
    assert "test_dprobs" in affected_tests(findings, NB1)


UNUSUAL_BUT_HONEST = {
    "F in full": "return torch.nn.functional.relu(dlogprobs) * 0 + dlogprobs / probs",
    "transposes and einsum": "return torch.einsum('ij,ij->ij', dlogprobs, probs.reciprocal().T.T)",
    "new_ and index_add_": "out = probs.new_zeros(probs.shape)\nreturn out.index_add_(0, torch.arange(len(probs)), dlogprobs / probs)",
    "math and containers": "scale = math.prod([1.0])\nparts = dict(a=dlogprobs)\nreturn parts.get('a') * scale / probs",
    "its own helper class": (
        "class Ratio:\n    def __init__(self, top):\n        self.top = top\n"
        "r = Ratio(dlogprobs)\nreturn r.top / probs"
    ),
    "a helper named like a kernel": "def ratio_backward(a, b):\n    return a / b\nreturn ratio_backward(dlogprobs, probs)",
}


@pytest.mark.parametrize("body", UNUSUAL_BUT_HONEST.values(), ids=UNUSUAL_BUT_HONEST.keys())
def test_unusual_honest_answers_pass_the_allowlist(course, body):
    assert course(probs_answer(body)) == []
