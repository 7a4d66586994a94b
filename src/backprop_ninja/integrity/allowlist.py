"""The answer cells' allowlist: every attribute an answer reads must be one the grader knows."""

from __future__ import annotations

import ast
import functools

from .rules import AUTOGRAD_ATTRS
from .scope import module_level_names

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


def derivative_kernel(name: str) -> bool:
    """PyTorch's own derivative formulas: ``tanh_backward``, ``nll_loss_backward``…"""
    return name.endswith("_backward") or name.startswith("backward_")


def cell_attribute_names(tree: ast.AST) -> set[str]:
    """Attributes the cell itself defines (``self.x = …``, class bodies): its own to read."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            names.update(module_level_names(ast.Module(body=node.body, type_ignores=[])))
            names.update(n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names
