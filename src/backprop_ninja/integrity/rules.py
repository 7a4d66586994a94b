"""What the scan looks for: names, modules and magics that autograd, monkeypatching and
dynamic tricks use, and what an answer cell may import."""

from __future__ import annotations

import re

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
LINE_MAGIC = re.compile(r"^(\s*)%(\w+)(.*)$")
SHELL = re.compile(r"^\s*!")
HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
TIMEIT_OPTIONS = re.compile(r"^(\s*(-[nrp]\s*\d+|-[tcqo]))*\s*")
