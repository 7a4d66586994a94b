"""Static integrity scan of a submitted notebook: autograd, monkeypatching, dynamic tricks.

The scan reads the submission's code cells as text and walks their syntax trees; it never
runs them. It complements the out-of-kernel verifier (``backprop_ninja.verify``), which is
the authority on whether an answer is right: the scan explains *why* an answer is not
trusted, in one line the student can act on, and takes away the points it affects.

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

import ast
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import grade_id as _grade_id
from .cells import nbgrader_meta
from .course import ASSIGNMENT, REPO_ROOT
from .exercises import GRADED_TESTS
from .text import printable

KINDS = ("autograd", "monkeypatch", "dynamic", "unknown", "forbidden_import", "syntax")


# Tests that are not gradient checks but depend on an answer function (notebook 4 trains
# with manual_backward): test grade_id → the function it runs.
DEPENDENT_TESTS: dict[str, dict[str, str]] = {"4_full_training": {"test_training": "manual_backward"}}


@dataclass(frozen=True)
class Finding:
    """One reason not to trust part of a submission. ``str(finding)`` is the student's line."""

    cell: str
    line: int
    kind: str
    message: str
    functions: tuple[str, ...] = ()
    whole_notebook: bool = False

    def __str__(self) -> str:
        where = f"{self.cell}, line {self.line}" if self.line else self.cell
        return f"⚑ {self.kind} ({where}): {self.message}"


# ------------------------------------------------------------------------ what is looked for
# Names that only the autograd machinery uses. Attributes on anything (x.grad, t.backward):
AUTOGRAD_ATTRS = frozenset(
    {
        "grad",
        "_grad",
        "grad_fn",
        "_grad_fn",
        "backward",
        "requires_grad",
        "requires_grad_",
        "retain_grad",
        "retains_grad",
        "register_hook",
        "register_post_accumulate_grad_hook",
        "_execution_engine",
        "run_backward",
        "autograd",
        "enable_grad",
        "set_grad_enabled",
        "_set_grad_enabled",
        "functorch",
        "_functorch",
        "forward_ad",
        "make_dual",
        "dual_level",
        "unpack_dual",
        "_engine_run_backward",
    }
)
# Functions that read an attribute named by a string: called directly, the scan reads the
# string; bound to another name or passed around, it cannot.
ATTRIBUTE_GETTERS = frozenset({"getattr", "attrgetter", "methodcaller"})
# ... and attributes that are autograd only when reached from torch (torch.func.vjp):
AUTOGRAD_TORCH_ATTRS = frozenset(
    {
        "func",
        "vjp",
        "jvp",
        "jacrev",
        "jacfwd",
        "hessian",
        "grad_and_value",
        "linearize",
    }
)
# Bare names that can only be autograd (after `from torch import *`).
AUTOGRAD_NAMES = frozenset({"enable_grad", "set_grad_enabled", "autograd", "functorch"})
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "torch._functorch", "functorch")

# Modules that reach into the interpreter, the file system or other processes.
DYNAMIC_MODULES = frozenset(
    {
        "importlib",
        "gc",
        "inspect",
        "ctypes",
        "sys",
        "os",
        "subprocess",
        "pickle",
        "builtins",
        "marshal",
        "types",
        "runpy",
        "code",
        "codeop",
        "shutil",
        "socket",
        "signal",
        "multiprocessing",
        "threading",
        "_thread",
        "dill",
        "cloudpickle",
        "IPython",
        "ipykernel",
        "nbgrader",
        "nbformat",
        "nbclient",
        "posix",
        "pty",
        "resource",
        "atexit",
        "faulthandler",
        "site",
        "sysconfig",
        "copyreg",
        "shelve",
        "mmap",
        "cffi",
    }
)
# Modules that other modules expose as attributes (torch.os, F.sys): reaching them that way.
DYNAMIC_MODULE_ATTRS = frozenset(
    {
        "os",
        "sys",
        "builtins",
        "subprocess",
        "ctypes",
        "gc",
        "inspect",
        "importlib",
        "pickle",
        "marshal",
    }
)
# In added cells these may be imported, and read in harmless ways (any other use is flagged).
ADDED_CELL_MODULES = frozenset({"os", "sys"})
HARMLESS_READS = (
    "os.path.",
    "os.environ.get",
    "os.getenv",
    "os.getcwd",
    "os.cpu_count",
    "os.sep",
    "sys.version",
    "sys.platform",
    "sys.getsizeof",
    "sys.stdout.",
    "sys.stderr.",
)
# Parts of torch that rewrite what torch's own functions do.
DYNAMIC_TORCH_PARTS = frozenset({"library", "overrides", "hub", "cpp_extension"})
# Builtins that run code from strings or reach the interpreter's namespaces.
DYNAMIC_BUILTINS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "breakpoint",
        "globals",
        "vars",
        "locals",
        "__builtins__",
        "__loader__",
        "__spec__",
        "get_ipython",
    }
)
PATCHING_BUILTINS = frozenset({"setattr", "delattr"})
# Attributes that expose an object's internals (its namespace, code, class tree).
DANGEROUS_DUNDERS = frozenset(
    {
        "__dict__",
        "__class__",
        "__subclasses__",
        "__globals__",
        "__code__",
        "__builtins__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__mro__",
        "__bases__",
        "__base__",
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__import__",
        "__loader__",
        "__spec__",
        "__self__",
        "__func__",
        "__wrapped__",
        "__reduce__",
        "__reduce_ex__",
        "__setstate__",
        "__getstate__",
        "__init_subclass__",
        "__set_name__",
        "__torch_function__",
        "__torch_dispatch__",
    }
)
# Attributes that walk the call stack (to the test's expected answer, in the kernel).
FRAME_ATTRS = frozenset(
    {
        "__traceback__",
        "tb_frame",
        "tb_next",
        "f_back",
        "f_locals",
        "f_globals",
        "f_builtins",
        "f_code",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "_getframe",
    }
)
# Methods that write or delete files (the kernel runs with the grader's permissions).
FILE_WRITING_ATTRS = frozenset(
    {
        "write_text",
        "write_bytes",
        "unlink",
        "rmdir",
        "chmod",
        "symlink_to",
        "hardlink_to",
        "touch",
    }
)
NAMESPACE_READS = frozenset({"get", "keys", "items", "values", "copy"})
COPYING_BUILTINS = frozenset({"len", "list", "sorted", "set", "tuple", "dict", "print", "repr"})

# What an answer cell may import. Packages marked here may be imported with submodules.
ALLOWED_ANSWER_IMPORTS = frozenset(
    {
        "math",
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.linalg",
        "torch.special",
        "numpy",
        "functools",
        "itertools",
        "operator",
        "collections",
        "typing",
        "dataclasses",
        "numbers",
        "__future__",
    }
)
ALLOWED_ANSWER_PACKAGES = ("numpy.", "collections.", "typing.")
ALLOWED_IMPORTS_TEXT = (
    "torch (and torch.nn.functional), math, numpy, functools, itertools, operator, collections and typing"
)

# What every answer cell may assume (cells.ANSWER_PRELUDE) and the usual module aliases.
PRELUDE_BINDINGS = {"torch": "torch", "F": "torch.nn.functional", "math": "math"}
MODULE_NAMES = frozenset(
    {
        "torch",
        "F",
        "nn",
        "np",
        "numpy",
        "math",
        "builtins",
        "sys",
        "os",
        "backprop_ninja",
        "__builtins__",
    }
)
# Packages whose objects the grading depends on: writing to anything imported from them is
# monkeypatching. (Other imports, e.g. `plt.rcParams[...] = ...`, are the student's business.)
GUARDED_PACKAGES = frozenset(
    {
        "torch",
        "numpy",
        "math",
        "builtins",
        "sys",
        "os",
        "backprop_ninja",
        "functorch",
        "functools",
        "operator",
        "importlib",
        "IPython",
        "nbgrader",
    }
)
# Configuration namespaces of torch that are not its functions (torch.backends.cudnn.x = …).
WRITABLE_TORCH_PREFIXES = ("torch.backends.",)
# Objects worth an alias (`t = torch.nn.functional; t.one_hot = …` patches F).
ALIASABLE = (
    "torch.nn",
    "torch.nn.functional",
    "torch.Tensor",
    "torch.autograd",
    "torch.linalg",
    "torch.special",
    "torch.func",
    "torch.testing",
    "torch.library",
    "torch.overrides",
)
# The objects the test cells work with; protected when a restored (setup) cell binds them.
TEST_HELPER_NAMES = frozenset(
    {
        "case",
        "test_on",
        "test_hidden",
        "test_training",
        "check",
        "stage_report",
        "chain_report",
        "expect_correct",
        "run_trial",
        "GradeFailure",
        "EXERCISE",
        "ATOMIC",
        "CROSS_ENTROPY",
        "BATCHNORM",
        "MANUAL_BACKWARD",
    }
)

# IPython syntax. Line magics that change nothing (or that only time a statement) are
# allowed; a cell may start with %%time/%%timeit/%%capture (its body is Python).
HARMLESS_LINE_MAGICS = frozenset(
    {
        "matplotlib",
        "precision",
        "xmode",
        "who",
        "whos",
        "who_ls",
        "pinfo",
        "pinfo2",
        "pdoc",
        "pdef",
        "psource",
        "lsmagic",
        "magic",
        "quickref",
        "pprint",
        "page",
        "history",
    }
)
TIMING_LINE_MAGICS = frozenset({"time", "timeit"})
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture"})
_LINE_MAGIC = re.compile(r"^(\s*)%(\w+)(.*)$")
_SHELL = re.compile(r"^\s*!")
_HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
_TIMEIT_OPTIONS = re.compile(r"^(\s*(-[nrp]\s*\d+|-[tcqo]))*\s*")


# ------------------------------------------------------------------------- the notebook
class SubmissionError(ValueError):
    """The submitted file is not a notebook that can be read."""


@dataclass(frozen=True)
class CodeCell:
    """A code cell of the submission, as the grader will treat it.

    ``role``: "answer" (an nbgrader answer cell), "restored" (nbgrader puts the source's
    text back), "course" (an unlocked cell of the source, still exactly as the instructor
    wrote it) or "added" (any other cell: the student's text runs). Only answer and added
    cells are scanned; only answer cells are run by the verifier.
    ``python`` is the text with harmless IPython syntax neutralised (same line numbers),
    or None when it does not parse even as IPython.
    """

    index: int
    role: str
    label: str
    source: str
    python: str | None
    magic_findings: tuple[tuple[int, str], ...] = ()  # (line, what) for disallowed magics
    syntax_error: str | None = None


def default_source_path(notebook_name: str) -> Path:
    return REPO_ROOT / "solutions" / ASSIGNMENT / f"{notebook_name}.ipynb"


def read_notebook_json(path: Path) -> dict:
    """The notebook at ``path`` as nbformat 4, read without ever opening it for writing."""
    import nbformat  # here, so that importing this module stays cheap

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # not UTF-8, not JSON, not a notebook
        raise SubmissionError(
            f"the notebook file cannot be read as a Jupyter notebook "
            f"({type(error).__name__}: {one_line(str(error), 120)})"
        ) from error
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError("the notebook file has no list of cells")
    return nb


def _source_text(cell) -> str | None:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    return source if isinstance(source, str) else None


def _is_locked(cell) -> bool:
    """nbgrader's rule (nbgrader.utils.is_locked): which source cells it restores."""
    meta = nbgrader_meta(cell)
    if not meta or meta.get("solution"):
        return False
    return bool(meta.get("grade")) or bool(meta.get("locked"))


def _meta(cell) -> dict:
    meta = cell.get("metadata", {})
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return meta if isinstance(meta, dict) else {}


def classify_cells(submitted: dict, source: dict) -> list[CodeCell]:
    """The submission's code cells with their role (see ``CodeCell``), in notebook order.

    A cell whose grade_id names a locked cell of the source is restored by nbgrader (its
    text is replaced by the source's), whatever its metadata now says. A cell whose grade_id
    names an answer cell of the source stays an answer cell even if its metadata was edited.
    """
    restored, answers, course_code = set(), set(), set()
    for cell in source.get("cells", []):
        gid = _grade_id(cell)
        if gid and _is_locked(cell):
            restored.add(gid)
        elif gid and nbgrader_meta(cell).get("solution"):
            answers.add(gid)
        elif cell.get("cell_type") == "code" and isinstance(_source_text(cell), str):
            course_code.add((_source_text(cell) or "").strip())
    result, added, unnamed = [], 0, 0
    for index, cell in enumerate(submitted["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        gid = _meta(cell).get("grade_id")
        gid = gid if isinstance(gid, str) and gid else None
        text = _source_text(cell)
        if gid in restored:
            role, label = "restored", gid
        elif (
            gid is None
            and not _meta(cell).get("solution")
            and text is not None
            and text.strip() in course_code
        ):
            role, label = "course", f"course cell #{index}"  # the instructor's text, unchanged
        elif gid in answers or _meta(cell).get("solution"):
            role = "answer"
            if gid:
                label = gid
            else:
                unnamed += 1
                label = f"answer cell #{unnamed}"
        else:
            added += 1
            role, label = "added", f"added cell #{added}"
        result.append(_prepare(index, role, label, _source_text(cell)))
    return result


def load_submission(
    submitted_path: Path, source_path: Path | None = None, notebook_name: str | None = None
) -> tuple[list[CodeCell], list[CodeCell]]:
    """(the submission's code cells, the source's restored code cells), classified.

    Raises ``SubmissionError`` if the submission cannot be read, ``FileNotFoundError`` if
    the source notebook is missing (a configuration error, not the student's).
    """
    name = notebook_name or Path(submitted_path).stem
    source_path = Path(source_path) if source_path is not None else default_source_path(name)
    if not source_path.exists():
        raise FileNotFoundError(
            f"source notebook {source_path} not found: the scan needs it "
            "to know which cells nbgrader restores"
        )
    source = read_notebook_json(source_path)
    submitted = read_notebook_json(submitted_path)
    source_cells = [c for c in classify_cells(source, source) if c.role in ("restored", "course")]
    return classify_cells(submitted, source), source_cells


# ------------------------------------------------------------------ IPython syntax → Python
def _prepare(index: int, role: str, label: str, source: str | None) -> CodeCell:
    if source is None:
        return CodeCell(index, role, label, "", None, (), "the cell's source is not text")
    python, magics = _neutralise_magics(source)
    error = _parse_error(python)
    if error is None:
        return CodeCell(index, role, label, source, python, magics)
    # Not Python even after the harmless magics: maybe IPython syntax inside a line
    # (`a = !ls`). IPython turns it into get_ipython() calls, which the scan flags.
    transformed = _ipython_transform(source)
    if transformed is not None and _parse_error(transformed) is None:
        return CodeCell(index, role, label, source, transformed, magics)
    return CodeCell(index, role, label, source, None, magics, error)


def _neutralise_magics(source: str) -> tuple[str, tuple[tuple[int, str], ...]]:
    """Replace IPython-only lines by Python with the same line numbers.

    Timing magics keep their statement; harmless magics and help (`x?`) become ``pass``;
    anything else (shell commands, %run, %%bash …) becomes ``pass`` and is reported.
    """
    if _parse_error(source) is None:
        return source, ()
    lines = source.split("\n")
    magics: list[tuple[int, str]] = []
    first = lines[0].strip()
    if first.startswith("%%"):
        name = first[2:].split()[0] if first[2:].split() else ""
        if name not in PYTHON_CELL_MAGICS:
            magics.append((1, first))
            return "\n" * (len(lines) - 1), tuple(magics)  # its body is not Python
        lines[0] = ""
    for i, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip())]
        match = _LINE_MAGIC.match(line)
        if match:
            name, rest = match.group(2), match.group(3).strip()
            if name in TIMING_LINE_MAGICS:
                statement = _TIMEIT_OPTIONS.sub("", rest, count=1) if name == "timeit" else rest
                lines[i] = indent + (statement or "pass")
                continue
            if name not in HARMLESS_LINE_MAGICS:
                magics.append((i + 1, line.strip()))
            lines[i] = indent + "pass"
        elif _SHELL.match(line):
            magics.append((i + 1, line.strip()))
            lines[i] = indent + "pass"
        elif _HELP.match(line):
            lines[i] = indent + "pass"
    return "\n".join(lines), tuple(magics)


def _ipython_transform(source: str) -> str | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # IPython missing or the transform itself failed
        return None


def _parse_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as error:
        return f"line {error.lineno}: {error.msg}"
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return one_line(f"{type(error).__name__}: {error}", 100)
    return None


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------- the answer cells' allowlist
# An answer computes with tensors: every attribute it reads must be one the grader knows —
# public names of torch, torch.nn.functional, torch.linalg, torch.special, math, a tensor, the
# builtin containers and the allowed helper modules. An unknown route (``torch.ops``,
# PyTorch's ``*_backward`` derivative kernels, a private corner of a library) is a finding,
# not a pass. Names the answer cell defines itself (a class's fields) are its own.
DENIED_ANSWER_ATTRIBUTES = frozenset({"ops", "library", "overrides", "hub", "func", "jit", "compile", "fx"})
KNOWN_TYPING_HELPERS = frozenset({"get_type_hints", "ForwardRef", "evaluate_forward_ref"})


@functools.cache
def known_answer_attributes() -> frozenset[str]:
    import collections
    import itertools
    import math

    import numpy
    import torch
    import torch.nn.functional as F

    sources: list[object] = [
        torch,
        torch.nn,
        F,
        torch.linalg,
        torch.special,
        torch.nn.init,
        math,
        numpy,
        itertools,
    ]
    sources += [torch.Tensor, torch.dtype, torch.Size, torch.Generator, numpy.ndarray, functools]
    sources += [collections, dict, list, tuple, set, str, int, float, complex, slice, range, bytes]
    names = {name for source in sources for name in dir(source) if not name.startswith("_")}
    return frozenset(names - DENIED_ANSWER_ATTRIBUTES - AUTOGRAD_ATTRS)


def _derivative_kernel(name: str) -> bool:
    """PyTorch's own derivative formulas: ``tanh_backward``, ``nll_loss_backward``…"""
    return name.endswith("_backward") or name.startswith("backward_")


def _cell_attribute_names(tree: ast.AST) -> set[str]:
    """Attributes the cell itself defines (``self.x = …``, class bodies): its own to read."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            names.update(_module_level_names(ast.Module(body=node.body, type_ignores=[])))
            names.update(n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


# ----------------------------------------------------------------------------- the scan
@dataclass
class _Context:
    """What the student's cells must not touch, learnt from the restored cells."""

    protected_roots: set[str]  # writing an attribute/item of these is monkeypatching
    protected_bindings: dict[str, str]  # rebinding these (unless to the same import) is too
    dynamic_bindings: dict[str, str]  # names bound to (parts of) dynamic modules → origin
    course_functions: set[str]  # names imported from backprop_ninja (may receive globals())
    origins: dict[str, str] = field(default_factory=dict)  # guarded name → dotted origin
    aliases: dict[str, str] = field(default_factory=dict)  # `t = torch` anywhere: t → "torch"
    defined: set[str] = field(default_factory=set)  # what the student's cells define at top level


def _imports(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(bound name, what it is bound to as a dotted path) for every import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    yield alias.asname, alias.name
                else:
                    top = alias.name.split(".")[0]
                    yield top, top
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name != "*":
                    yield alias.asname or alias.name, f"{module}.{alias.name}"


def _module_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        for sub in (
            ast.walk(node)
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            else ()
        ):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return names


def _guarded(origin: str) -> bool:
    return origin.split(".")[0] in GUARDED_PACKAGES


def _context(restored: Iterable[CodeCell], student_trees: Iterable[ast.AST]) -> _Context:
    ctx = _Context(
        set(PRELUDE_BINDINGS) | set(MODULE_NAMES),
        dict(PRELUDE_BINDINGS),
        {},
        set(),
        origins={**{n: n for n in MODULE_NAMES}, "np": "numpy", **PRELUDE_BINDINGS},
    )
    for cell in restored:
        if cell.python is None:
            continue
        tree = ast.parse(cell.python)
        for name, origin in _imports(tree):
            if _guarded(origin):
                ctx.protected_roots.add(name)
                ctx.protected_bindings[name] = ctx.origins[name] = origin
            if origin.split(".")[0] in DYNAMIC_MODULES:
                ctx.dynamic_bindings[name] = origin
            if origin.startswith("backprop_ninja"):
                ctx.course_functions.add(name)
        for name in _module_level_names(tree) & TEST_HELPER_NAMES:
            ctx.protected_roots.add(name)
            ctx.protected_bindings.setdefault(name, "<setup cell>")
    # What the student imports from those packages is guarded too — unless the name is then
    # reused for a variable (`from torch import tensor` … `tensor = x.clone(); tensor[0] = 1`).
    student_trees = list(student_trees)
    imported: dict[str, str] = {}
    reassigned: set[str] = set()
    for student_tree in student_trees:
        for name, origin in _imports(student_tree):
            if _guarded(origin):
                imported[name] = origin
            if origin.split(".")[0] in DYNAMIC_MODULES:
                ctx.dynamic_bindings.setdefault(name, origin)
        reassigned.update(
            n.id for n in ast.walk(student_tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        )
    for name, origin in imported.items():
        if name not in reassigned or name in ctx.protected_bindings:
            ctx.protected_roots.add(name)
            ctx.origins.setdefault(name, origin)
    _find_aliases(ctx, student_trees)
    return ctx


def _find_aliases(ctx: _Context, trees: list[ast.AST]) -> None:
    """Names bound (in any scope) to a guarded module or class: ``t = torch``,
    ``m = torch.nn.functional``, ``T = torch.Tensor`` — and aliases of aliases."""
    assignments = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                assignments += [(t, node.value) for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and isinstance(node.target, ast.Name):
                if node.value is not None:
                    assignments.append((node.target, node.value))
    changed = True
    while changed:
        changed = False
        for target, value in assignments:
            path = _resolve(value, ctx)
            if (
                path
                and target.id not in ctx.aliases
                and (isinstance(value, ast.Name) or path.startswith(ALIASABLE + ("backprop_ninja",)))
            ):
                ctx.aliases[target.id] = path
                changed = True


def _resolve(node: ast.AST, ctx: _Context) -> str | None:
    """``torch.nn.functional`` for ``F`` or ``torch.nn.functional``; None if not guarded."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = ctx.aliases.get(node.id) or (ctx.origins.get(node.id) if node.id in ctx.protected_roots else None)
    return ".".join([base] + parts[::-1]) if base else None


def _attach_parents(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child._parent = node  # type: ignore[attr-defined]


def _parent(node: ast.AST) -> ast.AST | None:
    return getattr(node, "_parent", None)


def _root(node: ast.AST) -> ast.AST:
    """The object an attribute/item chain starts from: ``torch`` in ``torch.nn.f[0].x``."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _root_name(node: ast.AST) -> str | None:
    root = _root(node)
    return root.id if isinstance(root, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return type(node).__name__


def _is_false(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _switches_grad_off(node: ast.Attribute) -> bool:
    """``torch.set_grad_enabled(False)``: harmless, unlike every other use of the name."""
    call = _parent(node)
    return (
        node.attr == "set_grad_enabled"
        and isinstance(call, ast.Call)
        and call.func is node
        and len(call.args) == 1
        and _is_false(call.args[0])
    )


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _local_names(fn: Any) -> set[str]:  # a FunctionDef, AsyncFunctionDef or Lambda
    """Parameters and names a function (or lambda) binds locally, minus its globals."""
    args = fn.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared_global = set()
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update(name for name, _ in _imports(node))
            elif isinstance(node, ast.Global):
                declared_global.update(node.names)
    return names - declared_global


class _CellScanner(ast.NodeVisitor):
    """Walks one cell; ``findings`` are (line, kind, message, owner) with owner = the
    top-level definition the code is in, or None at module level."""

    def __init__(self, cell: CodeCell, ctx: _Context):
        self.cell, self.ctx = cell, ctx
        self.answer = cell.role == "answer"
        self.findings: list[tuple[int, str, str, str | None]] = []
        self.owner: str | None = None
        self.scopes: list[set[str]] = []  # local names of the enclosing functions
        self.own_attributes = _cell_attribute_names(ast.parse(cell.python)) if cell.python else set()

    # -- helpers
    def where(self) -> str:
        if self.owner:
            return self.owner
        return "an answer cell" if self.answer else self.cell.label

    def add(self, node: ast.AST, kind: str, message: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), kind, message, self.owner))

    def is_local(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def protected_root(self, node: ast.AST) -> str | None:
        name = _root_name(node)
        if name in self.ctx.aliases or (name in self.ctx.protected_roots and not self.is_local(name)):
            return name
        return None

    def torch_rooted(self, node: ast.AST) -> bool:
        name = _root_name(node)
        if name in self.ctx.aliases:
            return self.ctx.aliases[name].startswith("torch")
        return (
            name is not None
            and not self.is_local(name)
            and (name == "torch" or self.ctx.origins.get(name, "").startswith("torch"))
        )

    def autograd(self, node: ast.AST, what: str) -> None:
        if self.answer:
            self.add(
                node, "autograd", f"{self.where()} uses autograd (`{what}`) — compute the gradient by hand"
            )

    def dynamic(self, node: ast.AST, what: str, why: str = "reaches into the interpreter") -> None:
        self.add(
            node,
            "dynamic",
            f"{self.where()} uses `{what}`, which {why} — answers may "
            "only compute with tensors, and no cell may change how the tests run",
        )

    def monkeypatch(self, node: ast.AST, what: str, verb: str = "replaces") -> None:
        self.add(
            node,
            "monkeypatch",
            f"{self.where()} {verb} `{what}` — code outside your function "
            "may not change torch, numpy, builtins, the course package or the tests",
        )

    # -- definitions: track the owner and the local scope
    def visit_FunctionDef(self, node) -> None:
        if node.name in ("__torch_function__", "__torch_dispatch__"):
            self.dynamic(node, node.name, "intercepts every torch operation")
        self._check_rebinding(node, node.name)
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        self._enter(node, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node) -> None:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        self._enter(node, [node.body], keep_owner=True)

    def visit_ClassDef(self, node) -> None:
        self._check_rebinding(node, node.name)
        for base in node.bases:
            if isinstance(base, ast.Attribute) and base.attr == "Tensor" and self.torch_rooted(base):
                self.dynamic(base, _dotted(base), "can make a tensor lie about its values")
        for item in node.bases + node.keywords + node.decorator_list:
            self.visit(item)
        owner = self.owner
        self.owner = owner or node.name
        for stmt in node.body:
            self.visit(stmt)
        self.owner = owner

    def _enter(self, node, body, keep_owner: bool = False) -> None:
        owner = self.owner
        if not keep_owner or owner is None:
            self.owner = owner or getattr(node, "name", None)
        self.scopes.append(_local_names(node))
        for stmt in body:
            self.visit(stmt)
        self.scopes.pop()
        self.owner = owner

    def visit_Global(self, node) -> None:
        for name in node.names:
            if name in self.ctx.protected_bindings:
                self.monkeypatch(node, name, "declares global")

    # -- names
    def visit_Name(self, node) -> None:
        name = node.id
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            if not self.scopes:
                self._check_rebinding(node, name, deleting=isinstance(node.ctx, ast.Del))
            return
        if self.is_local(name):
            return
        parent = _parent(node)
        if name in ATTRIBUTE_GETTERS and not (isinstance(parent, ast.Call) and parent.func is node):
            self.dynamic(node, name, "hides which attribute it reads when used as a value")
        elif name in PATCHING_BUILTINS:
            self.monkeypatch(node, name, "uses")
        elif name in DYNAMIC_BUILTINS and not self._namespace_read(node):
            self.dynamic(node, name)
        elif name == "open" and (self.answer or not self._opens_for_reading(node)):
            self.dynamic(node, "open", "reads or writes files" if self.answer else "writes files")
        elif name in self.ctx.dynamic_bindings:
            path = self._dynamic_path(node)
            if self.answer or not _harmless_read(path, _parent(_outermost_attribute(node))):
                self.dynamic(node, path)
        elif name in AUTOGRAD_NAMES:
            self.autograd(node, name)
        elif (
            self.answer
            and _derivative_kernel(name)
            and not self.is_local(name)
            and name not in self.ctx.defined
        ):
            self.derivative_kernel(node, name)

    def _namespace_read(self, node: ast.Name) -> bool:
        """``globals()``/``locals()`` only read: ``globals()[k]``, ``.get/.keys…``, ``k in
        globals()``, iterated, copied (``list(globals())``), or handed to a course function
        (``stage_report(targets, globals(), case)``)."""
        if node.id not in ("globals", "vars", "locals"):
            return False
        call = _parent(node)
        if not (
            isinstance(call, ast.Call)
            and call.func is node
            and not call.keywords
            and len(call.args) == (1 if node.id == "vars" else 0)
        ):
            return False
        if node.id == "vars":  # vars(x) reads x's namespace: torch's is off limits
            return False
        user = _parent(call)
        if isinstance(user, ast.Subscript) and user.value is call:
            return isinstance(user.ctx, ast.Load)
        if isinstance(user, ast.Attribute) and user.value is call:
            return user.attr in NAMESPACE_READS
        if isinstance(user, ast.Compare) and call in user.comparators:
            return all(isinstance(op, (ast.In, ast.NotIn)) for op in user.ops)
        if isinstance(user, (ast.For, ast.comprehension)) and user.iter is call:
            return True
        if isinstance(user, ast.Call) and call in user.args and isinstance(user.func, ast.Name):
            return user.func.id in self.ctx.course_functions or user.func.id in COPYING_BUILTINS
        return False

    @staticmethod
    def _opens_for_reading(node: ast.Name) -> bool:
        """``open(path)`` or ``open(path, "r")``/``"rb"``: added cells may read files."""
        call = _parent(node)
        if not (isinstance(call, ast.Call) and call.func is node):
            return False
        mode = (
            call.args[1]
            if len(call.args) > 1
            else next((k.value for k in call.keywords if k.arg == "mode"), ast.Constant("r"))
        )
        return (
            isinstance(mode, ast.Constant)
            and isinstance(mode.value, str)
            and not set(mode.value) & set("wax+")
        )

    def _dynamic_path(self, node: ast.Name) -> str:
        """``os.environ.get`` for the ``os`` in ``os.environ.get(…)``, by its import's origin."""
        attrs: list[str] = []
        top: ast.AST = node
        while isinstance(parent := _parent(top), ast.Attribute) and parent.value is top:
            top = parent
            attrs.append(top.attr)
        return ".".join([self.ctx.dynamic_bindings[node.id]] + attrs)

    def _check_rebinding(self, node: ast.AST, name: str, deleting: bool = False) -> None:
        if self.scopes or name not in self.ctx.protected_bindings:
            return
        self.monkeypatch(node, name, "deletes" if deleting else "redefines")

    # -- attributes, items, calls
    def visit_Attribute(self, node) -> None:
        attr = node.attr
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._check_write(node)
        if attr in DANGEROUS_DUNDERS:
            self.dynamic(node, f".{attr}", "exposes an object's internals")
        elif attr in FRAME_ATTRS:
            self.dynamic(node, f".{attr}", "walks the call stack")
        elif attr in FILE_WRITING_ATTRS:
            self.dynamic(node, f".{attr}", "writes or deletes files")
        elif attr in DYNAMIC_MODULE_ATTRS:
            self.dynamic(node, _dotted(node))
        elif attr in AUTOGRAD_ATTRS or (attr in AUTOGRAD_TORCH_ATTRS and self.torch_rooted(node)):
            if not _switches_grad_off(node):
                self.autograd(node, f".{attr}" + ("(" if attr == "backward" else ""))
        elif self.torch_rooted(node) and (
            attr in DYNAMIC_TORCH_PARTS or (attr.startswith("_") and not _is_dunder(attr))
        ):
            self.dynamic(node, _dotted(node), "changes or bypasses what torch's functions do")
        elif attr.startswith("_") and not _is_dunder(attr) and self.protected_root(node.value):
            self.dynamic(node, _dotted(node), "reaches into a module's private internals")
        elif self.answer and _derivative_kernel(attr):
            self.derivative_kernel(node, _dotted(node))
        elif self.answer and attr in KNOWN_TYPING_HELPERS:
            self.unknown(node, f".{attr}", "evaluates code hidden in strings")
        elif self.answer and not self._known_attribute(attr) and not self._under_autograd(node):
            self.unknown(node, _dotted(node), "is not a tensor, torch, F or math attribute the grader knows")
        self.generic_visit(node)

    def _known_attribute(self, attr: str) -> bool:
        return _is_dunder(attr) or attr in known_answer_attributes() or attr in self.own_attributes

    @staticmethod
    def _under_autograd(node: ast.Attribute) -> bool:
        """``torch.autograd.functional.jacobian``: its autograd finding says it all."""
        parts = set(_dotted(node).split("."))
        return bool(parts & (AUTOGRAD_NAMES | AUTOGRAD_TORCH_ATTRS | AUTOGRAD_ATTRS))

    def derivative_kernel(self, node: ast.AST, what: str) -> None:
        self.add(
            node,
            "autograd",
            f"{self.where()} calls PyTorch's own derivative kernel (`{what}`) — derive the "
            "gradient and write it yourself",
        )

    def unknown(self, node: ast.AST, what: str, why: str) -> None:
        """A route the answer cells' allowlist does not know: the function's points are void."""
        self.add(node, "unknown", f"{self.where()} uses `{what}`, which {why} — use torch, F and math")

    def visit_Match(self, node) -> None:
        if self.answer:  # class patterns read attributes by name, past the checks above
            self.unknown(node, "match", "can read attributes the grader cannot see")
        self.generic_visit(node)

    def visit_arg(self, node) -> None:
        self._check_annotation(node.annotation)
        self.generic_visit(node)

    def visit_AnnAssign(self, node) -> None:
        self._check_annotation(node.annotation)
        self.generic_visit(node)

    def _check_annotation(self, annotation: ast.AST | None) -> None:
        if self.answer and isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            self.unknown(annotation, f"the string annotation {annotation.value!r}", "typing can evaluate")

    def visit_Subscript(self, node) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._check_write(node)
        self.generic_visit(node)

    def _check_write(self, target: Any) -> None:  # an Attribute or Subscript being written
        name = self.protected_root(target)
        if name is not None and not _dotted(target).startswith(WRITABLE_TORCH_PREFIXES):
            self.monkeypatch(
                target, _dotted(target), "deletes" if isinstance(target.ctx, ast.Del) else "replaces"
            )

    def visit_Constant(self, node) -> None:
        # A string naming autograd is how `getattr(t, name)` or `**{"requires_grad": True}`
        # would reach it; docstrings and messages never equal one of these names.
        if isinstance(node.value, str) and node.value in AUTOGRAD_ATTRS:
            self.autograd(node, repr(node.value))
        elif self.answer and isinstance(node.value, str) and _derivative_kernel(node.value):
            self.derivative_kernel(node, repr(node.value))

    def visit_Call(self, node) -> None:
        func = node.func
        for keyword in node.keywords:
            if keyword.arg == "requires_grad" and not _is_false(keyword.value):
                self.autograd(keyword, "requires_grad=")
            elif (keyword.arg == "weights_only" and not _is_true(keyword.value)) or (
                keyword.arg == "allow_pickle" and not _is_false(keyword.value)
            ):
                self.dynamic(
                    keyword,
                    f"{keyword.arg}={_dotted(keyword.value)}",
                    "unpickles a file, which can run any code",
                )
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "inference_mode":
            mode = (
                node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if _is_false(mode) or (mode is not None and not isinstance(mode, ast.Constant)):
                self.autograd(node, "inference_mode(False)")
        if called in ("getattr", "hasattr", "attrgetter", "methodcaller") and not self.is_local(called):
            self._check_attribute_names(node, called)
        self.generic_visit(node)

    def _check_attribute_names(self, node: ast.Call, called: str) -> None:
        args = node.args[1:2] if called in ("getattr", "hasattr") else node.args
        target = node.args[0] if called in ("getattr", "hasattr") and node.args else None
        for arg in args:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                if called != "hasattr":
                    self.dynamic(
                        node, f"{called}(…, {_dotted(arg)})", "looks up an attribute by a computed name"
                    )
                continue
            for attr in arg.value.split("."):
                if attr in DANGEROUS_DUNDERS or attr in DYNAMIC_MODULES or attr in FRAME_ATTRS:
                    self.dynamic(node, f'{called}(…, "{attr}")', "exposes an object's internals")
                elif attr in AUTOGRAD_ATTRS or (
                    attr in AUTOGRAD_TORCH_ATTRS and target is not None and self.torch_rooted(target)
                ):
                    self.autograd(node, f'{called}(…, "{attr}")')
                elif (
                    attr.startswith("_")
                    and not _is_dunder(attr)
                    and target is not None
                    and self.protected_root(target)
                ):
                    self.dynamic(node, f'{called}(…, "{attr}")', "reaches into a module's private internals")

    # -- imports
    def visit_Import(self, node) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            origin = alias.name if alias.asname else alias.name.split(".")[0]
            self._check_import(node, alias.name, bound, origin)

    def visit_ImportFrom(self, node) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self._check_import(node, module, None, None)
                continue
            full = f"{module}.{alias.name}"
            bound = alias.asname or alias.name
            if alias.name in ATTRIBUTE_GETTERS and bound != alias.name:
                self.dynamic(node, f"{alias.name} as {bound}", "hides which attribute it reads")
                continue
            if module == "torch" and (alias.name in AUTOGRAD_ATTRS | AUTOGRAD_TORCH_ATTRS):
                self.autograd(node, f"from torch import {alias.name}")
                continue
            if module == "torch" and (alias.name in DYNAMIC_TORCH_PARTS or alias.name.startswith("_")):
                self.dynamic(
                    node, f"from torch import {alias.name}", "changes or bypasses what torch's functions do"
                )
                continue
            self._check_import(node, full if _is_module_path(full) else module, bound, full)

    def _check_import(self, node, module: str, bound: str | None, origin: str | None) -> None:
        parts = module.lstrip(".").split(".")
        if bound is not None and not self.scopes and bound in self.ctx.protected_bindings:
            if self.ctx.protected_bindings[bound] != origin:
                self.monkeypatch(node, bound, "rebinds")
        if module.startswith(AUTOGRAD_MODULES) or parts[0] == "functorch":
            self.autograd(node, f"import {module}")
        elif parts[0] in DYNAMIC_MODULES:
            if self.answer or parts[0] not in ADDED_CELL_MODULES:
                self.dynamic(node, f"import {module}")
        elif parts[0] == "torch" and any(
            p in DYNAMIC_TORCH_PARTS or (p.startswith("_") and not _is_dunder(p)) for p in parts[1:]
        ):
            self.dynamic(node, f"import {module}", "changes or bypasses what torch's functions do")
        elif self.answer and not _answer_import_allowed(module):
            what = "the course package" if parts[0] == "backprop_ninja" else f"`{module}`"
            self.add(
                node,
                "forbidden_import",
                f"{self.where()} imports {what} — answer cells may import only {ALLOWED_IMPORTS_TEXT}",
            )


def _outermost_attribute(node: ast.AST) -> ast.AST:
    while isinstance(parent := _parent(node), ast.Attribute) and parent.value is node:
        node = parent
    return node


def _harmless_read(path: str, user: ast.AST | None) -> bool:
    """A read that cannot change anything: ``os.path.join(…)``, ``os.environ["HOME"]``."""
    if path.startswith(HARMLESS_READS) or path + "." in HARMLESS_READS:
        return True
    return path == "os.environ" and isinstance(user, ast.Subscript) and isinstance(user.ctx, ast.Load)


def _is_module_path(dotted: str) -> bool:
    """Whether ``from a import b`` names a module we know (torch.nn.functional) or not."""
    return dotted in ALLOWED_ANSWER_IMPORTS or dotted.startswith(AUTOGRAD_MODULES)


def _answer_import_allowed(module: str) -> bool:
    return module in ALLOWED_ANSWER_IMPORTS or module.startswith(ALLOWED_ANSWER_PACKAGES)


# ------------------------------------------------------------ which answers a finding hits
def top_level_definitions(tree: ast.Module) -> dict[str, set[str]]:
    """Top-level definitions of a cell → the global names their code refers to.

    Functions, classes, imports and module-level assignments (``grad_b2 = lambda d: d.sum(0)``).
    """
    definitions: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            definitions.setdefault(node.name, set()).update(names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, _ in _imports(node):
                definitions.setdefault(name, set())
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            used = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)} if node.value else set()
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        definitions.setdefault(sub.id, set()).update(used)
    return definitions


def _callers_closure(names: set[str], references: dict[str, set[str]]) -> set[str]:
    """``names`` and every definition that refers to one of them, transitively."""
    affected = set(names)
    changed = True
    while changed:
        changed = False
        for definition, used in references.items():
            if definition not in affected and used & affected:
                affected.add(definition)
                changed = True
    return affected


_DEF_LINE = re.compile(r"^(?:async\s+)?def\s+(\w+)|^(\w+)\s*=\s*lambda\b", re.MULTILINE)


def scan_cells(cells: list[CodeCell], restored: list[CodeCell]) -> list[Finding]:
    """The scan itself, on classified cells (see ``scan_notebook``)."""
    scanned = [c for c in cells if c.role in ("answer", "added")]
    trees = {c.index: ast.parse(c.python) for c in scanned if c.python is not None}
    ctx = _context(restored, trees.values())
    ctx.defined = {name for tree in trees.values() for name in _module_level_names(tree)}
    references: dict[str, set[str]] = {}
    cell_defs: dict[int, set[str]] = {}
    for cell in scanned:
        if cell.role == "answer" and cell.index in trees:
            defs = top_level_definitions(trees[cell.index])
            cell_defs[cell.index] = set(defs)
            for name, used in defs.items():
                references.setdefault(name, set()).update(used - {name})

    findings: list[Finding] = []
    seen: set[tuple[str, int, str]] = set()

    def emit(cell: CodeCell, line: int, kind: str, message: str, functions=(), whole=False):
        key = (cell.label, line, kind)
        if key not in seen:
            seen.add(key)
            findings.append(
                Finding(cell.label, line, kind, one_line(message, 240), tuple(sorted(functions)), whole)
            )

    for cell in scanned:
        where = "an answer cell" if cell.role == "answer" else cell.label
        for line, what in cell.magic_findings:
            emit(
                cell,
                line,
                "dynamic",
                f"{where} runs `{one_line(what, 60)}` — shell commands and "
                "IPython magics other than %time/%timeit are not allowed in graded notebooks",
                whole=True,
            )
        if cell.python is None:
            meant = {m.group(1) or m.group(2) for m in _DEF_LINE.finditer(cell.source)} | (
                {cell.label} if cell.role == "answer" else set()
            )
            if cell.role == "answer":
                emit(
                    cell,
                    0,
                    "syntax",
                    f"{where} does not parse ({cell.syntax_error}) — nothing in it can run",
                    meant,
                )
            else:
                emit(
                    cell,
                    0,
                    "syntax",
                    f"{where} does not parse ({cell.syntax_error}) — it cannot run; fix or delete it",
                )
            continue
        tree = trees[cell.index]
        _attach_parents(tree)
        scanner = _CellScanner(cell, ctx)
        scanner.visit(tree)
        for line, kind, message, owner in scanner.findings:
            if kind in ("monkeypatch", "dynamic"):
                emit(cell, line, kind, message, whole=True)
                continue
            if kind == "autograd" and owner is None and _comparison_only(tree, line):
                emit(cell, line, kind, COMPARISON_MESSAGE.format(where=where, line=line))
                continue
            direct = {owner} if owner else cell_defs.get(cell.index, set())
            emit(cell, line, kind, message, _callers_closure(direct, references))
    return findings


# ---------------------------------------------- issue 13: autograd comparisons in answer cells
# The lecture compares each manual gradient with autograd's. Done at the top level of an
# answer cell, the comparison is not part of the function: the verifier runs answer cells
# without autograd, statement by statement, so it cannot help the function. Such a finding
# voids nothing (functions=()) and says where the comparison belongs; the notebook's test
# shows it. It still voids the functions when they read a name the comparison assigns.
COMPARISON_MESSAGE = (
    "{where} compares with autograd at line {line} — move that comparison into a cell of its own "
    "(insert a cell below the answer cell): answer cells are graded without autograd"
)


def _comparison_only(tree: ast.Module, line: int) -> bool:
    """Whether the top-level statement at ``line`` is a comparison no function of the cell uses."""
    stmt = next((s for s in tree.body if s.lineno <= line <= (s.end_lineno or s.lineno)), None)
    if stmt is None or any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.Global))
        for n in ast.walk(stmt)
    ):
        return False
    stored = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(stmt):  # x[...] = ..., x.attr = ...: x is changed too
        for target in getattr(node, "targets", []) + [getattr(node, "target", None)]:
            if isinstance(target, (ast.Subscript, ast.Attribute)) and _root_name(target):
                stored.add(str(_root_name(target)))
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    ]
    for function in functions:
        reads = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        if (reads - _local_names(function)) & stored:
            return False
    return bool(functions)


def scan_answer_source(source: str, label: str) -> list[Finding]:
    """The scan of one answer cell's text: the notebooks' tests show its findings in the kernel."""
    return scan_cells([_prepare(0, "answer", label, source)], [])


def scan_notebook(submitted_path: Path, source_path: Path | None = None) -> list[Finding]:
    """Scan the code of a submitted notebook, without running it.

    ``source_path``: the instructor's version of the same notebook (default: the
    notebook of the same name under solutions/backprop_ninja). An unreadable submission
    gives a single ``syntax`` finding that voids the whole notebook.
    """
    try:
        cells, restored = load_submission(Path(submitted_path), source_path)
    except SubmissionError as error:
        return [Finding("notebook", 0, "syntax", str(error), (), True)]
    return scan_cells(cells, restored)


def graded_test_ids(notebook_name: str) -> tuple[str, ...]:
    """Every graded test cell of a notebook: the gradient tests, then the dependent ones."""
    return tuple(GRADED_TESTS[notebook_name]) + tuple(DEPENDENT_TESTS.get(notebook_name, {}))


def affected_tests(findings: Iterable[Finding], notebook_name: str) -> dict[str, list[Finding]]:
    """Test grade_id → the findings that void it (tests with none are left out)."""
    exercises = GRADED_TESTS[notebook_name]
    dependent = DEPENDENT_TESTS.get(notebook_name, {})
    function_of = {gid: ex.function for gid, ex in exercises.items()} | dependent
    result: dict[str, list[Finding]] = {}
    for finding in findings:
        for gid in graded_test_ids(notebook_name):
            if finding.whole_notebook or function_of[gid] in finding.functions:
                result.setdefault(gid, []).append(finding)
    return result


def summary(findings: Iterable[Finding]) -> str:
    """One line per finding, for logs and feedback."""
    return "\n".join(str(f) for f in findings)


def main(argv: list[str] | None = None) -> int:
    """``python -m backprop_ninja.integrity SUBMITTED.ipynb [SOURCE.ipynb]``: print the findings."""
    import argparse

    parser = argparse.ArgumentParser(description="Static integrity scan of a submitted notebook.")
    parser.add_argument("submitted", type=Path)
    parser.add_argument("source", type=Path, nargs="?")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    findings = scan_notebook(args.submitted, args.source)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=1, ensure_ascii=False))
    else:
        print(summary(findings) or "no findings")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
