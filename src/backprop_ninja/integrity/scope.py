"""What a cell may not touch, learnt from the restored cells, and the syntax-tree helpers
the scanner uses."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .rules import (
    ALIASABLE,
    ALLOWED_ANSWER_IMPORTS,
    ALLOWED_ANSWER_PACKAGES,
    AUTOGRAD_MODULES,
    DYNAMIC_MODULES,
    GUARDED_PACKAGES,
    HARMLESS_READS,
    MODULE_NAMES,
    PRELUDE_BINDINGS,
    TEST_HELPER_NAMES,
)
from .submission import CodeCell


# ----------------------------------------------------------------------------- the scan
@dataclass
class Context:
    """What the student's cells must not touch, learnt from the restored cells."""

    protected_roots: set[str]  # writing an attribute/item of these is monkeypatching
    protected_bindings: dict[str, str]  # rebinding these (unless to the same import) is too
    dynamic_bindings: dict[str, str]  # names bound to (parts of) dynamic modules → origin
    course_functions: set[str]  # names imported from backprop_ninja (may receive globals())
    origins: dict[str, str] = field(default_factory=dict)  # guarded name → dotted origin
    aliases: dict[str, str] = field(default_factory=dict)  # `t = torch` anywhere: t → "torch"
    defined: set[str] = field(default_factory=set)  # what the student's cells define at top level


def imported_modules_of(tree: ast.AST) -> Iterator[tuple[str, str]]:
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


def module_level_names(tree: ast.Module) -> set[str]:
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


def context_for(restored: Iterable[CodeCell], student_trees: Iterable[ast.AST]) -> Context:
    ctx = Context(
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
        for name, origin in imported_modules_of(tree):
            if _guarded(origin):
                ctx.protected_roots.add(name)
                ctx.protected_bindings[name] = ctx.origins[name] = origin
            if origin.split(".")[0] in DYNAMIC_MODULES:
                ctx.dynamic_bindings[name] = origin
            if origin.startswith("backprop_ninja"):
                ctx.course_functions.add(name)
        for name in module_level_names(tree) & TEST_HELPER_NAMES:
            ctx.protected_roots.add(name)
            ctx.protected_bindings.setdefault(name, "<setup cell>")
    # What the student imports from those packages is guarded too — unless the name is then
    # reused for a variable (`from torch import tensor` … `tensor = x.clone(); tensor[0] = 1`).
    student_trees = list(student_trees)
    imported: dict[str, str] = {}
    reassigned: set[str] = set()
    for student_tree in student_trees:
        for name, origin in imported_modules_of(student_tree):
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


def _find_aliases(ctx: Context, trees: list[ast.AST]) -> None:
    """Names bound (in any scope) to a guarded module or class: ``t = torch``,
    ``m = torch.nn.functional``, ``T = torch.Tensor`` — and aliases of aliases."""
    assignments = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                assignments += [(t, node.value) for t in node.targets if isinstance(t, ast.Name)]
            elif (
                isinstance(node, (ast.AnnAssign, ast.NamedExpr))
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                assignments.append((node.target, node.value))
    changed = True
    while changed:
        changed = False
        for target, value in assignments:
            path = _resolve(value, ctx)
            if (
                path
                and target.id not in ctx.aliases
                and (isinstance(value, ast.Name) or path.startswith((*ALIASABLE, "backprop_ninja")))
            ):
                ctx.aliases[target.id] = path
                changed = True


def _resolve(node: ast.AST, ctx: Context) -> str | None:
    """``torch.nn.functional`` for ``F`` or ``torch.nn.functional``; None if not guarded."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = ctx.aliases.get(node.id) or (ctx.origins.get(node.id) if node.id in ctx.protected_roots else None)
    return ".".join([base, *parts[::-1]]) if base else None


def attach_parents(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child._bn_parent = node  # type: ignore[attr-defined]


def parent_of(node: ast.AST) -> ast.AST | None:
    return getattr(node, "_bn_parent", None)


def _root(node: ast.AST) -> ast.AST:
    """The object an attribute/item chain starts from: ``torch`` in ``torch.nn.f[0].x``."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def root_name(node: ast.AST) -> str | None:
    root = _root(node)
    return root.id if isinstance(root, ast.Name) else None


def dotted_name(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return type(node).__name__


def is_false(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def switches_grad_off(node: ast.Attribute) -> bool:
    """``torch.set_grad_enabled(False)``: harmless, unlike every other use of the name."""
    call = parent_of(node)
    return (
        node.attr == "set_grad_enabled"
        and isinstance(call, ast.Call)
        and call.func is node
        and len(call.args) == 1
        and is_false(call.args[0])
    )


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def local_names(fn: Any) -> set[str]:  # a FunctionDef, AsyncFunctionDef or Lambda
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
                names.update(name for name, _ in imported_modules_of(node))
            elif isinstance(node, ast.Global):
                declared_global.update(node.names)
    return names - declared_global


def outermost_attribute(node: ast.AST) -> ast.AST:
    while isinstance(parent := parent_of(node), ast.Attribute) and parent.value is node:
        node = parent
    return node


def harmless_read(path: str, user: ast.AST | None) -> bool:
    """A read that cannot change anything: ``os.path.join(…)``, ``os.environ["HOME"]``."""
    if path.startswith(HARMLESS_READS) or path + "." in HARMLESS_READS:
        return True
    return path == "os.environ" and isinstance(user, ast.Subscript) and isinstance(user.ctx, ast.Load)


def is_module_path(dotted: str) -> bool:
    """Whether ``from a import b`` names a module we know (torch.nn.functional) or not."""
    return dotted in ALLOWED_ANSWER_IMPORTS or dotted.startswith(AUTOGRAD_MODULES)


def answer_import_allowed(module: str) -> bool:
    return module in ALLOWED_ANSWER_IMPORTS or module.startswith(ALLOWED_ANSWER_PACKAGES)
