"""The scan of one code cell: a syntax-tree visitor that reports findings."""

from __future__ import annotations

import ast
from typing import Any

from .allowlist import (
    KNOWN_TYPING_HELPERS,
    cell_attribute_names,
    derivative_kernel,
    known_answer_attributes,
)
from .imports import ImportChecks
from .rules import (
    ATTRIBUTE_GETTERS,
    AUTOGRAD_ATTRS,
    AUTOGRAD_NAMES,
    AUTOGRAD_TORCH_ATTRS,
    COPYING_BUILTINS,
    DANGEROUS_DUNDERS,
    DYNAMIC_BUILTINS,
    DYNAMIC_MODULE_ATTRS,
    DYNAMIC_MODULES,
    DYNAMIC_TORCH_PARTS,
    FILE_WRITING_ATTRS,
    FRAME_ATTRS,
    NAMESPACE_READS,
    PATCHING_BUILTINS,
    WRITABLE_TORCH_PREFIXES,
)
from .scope import (
    Context,
    dotted_name,
    harmless_read,
    is_dunder,
    is_false,
    is_true,
    local_names,
    outermost_attribute,
    parent_of,
    root_name,
    switches_grad_off,
)
from .submission import CodeCell


class CellScanner(ImportChecks, ast.NodeVisitor):
    """Walks one cell; ``findings`` are (line, kind, message, owner) with owner = the
    top-level definition the code is in, or None at module level."""

    def __init__(self, cell: CodeCell, ctx: Context):
        self.cell, self.ctx = cell, ctx
        self.answer = cell.role == "answer"
        self.findings: list[tuple[int, str, str, str | None]] = []
        self.owner: str | None = None
        self.scopes: list[set[str]] = []  # local names of the enclosing functions
        self.own_attributes = cell_attribute_names(ast.parse(cell.python)) if cell.python else set()

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
        name = root_name(node)
        if name in self.ctx.aliases or (name in self.ctx.protected_roots and not self.is_local(name)):
            return name
        return None

    def torch_rooted(self, node: ast.AST) -> bool:
        name = root_name(node)
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
                self.dynamic(base, dotted_name(base), "can make a tensor lie about its values")
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
        self.scopes.append(local_names(node))
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
        parent = parent_of(node)
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
            if self.answer or not harmless_read(path, parent_of(outermost_attribute(node))):
                self.dynamic(node, path)
        elif name in AUTOGRAD_NAMES:
            self.autograd(node, name)
        elif (
            self.answer
            and derivative_kernel(name)
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
        call = parent_of(node)
        if not (
            isinstance(call, ast.Call)
            and call.func is node
            and not call.keywords
            and len(call.args) == (1 if node.id == "vars" else 0)
        ):
            return False
        if node.id == "vars":  # vars(x) reads x's namespace: torch's is off limits
            return False
        user = parent_of(call)
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
        call = parent_of(node)
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
        while isinstance(parent := parent_of(top), ast.Attribute) and parent.value is top:
            top = parent
            attrs.append(top.attr)
        return ".".join([self.ctx.dynamic_bindings[node.id], *attrs])

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
            self.dynamic(node, dotted_name(node))
        elif attr in AUTOGRAD_ATTRS or (attr in AUTOGRAD_TORCH_ATTRS and self.torch_rooted(node)):
            if not switches_grad_off(node):
                self.autograd(node, f".{attr}" + ("(" if attr == "backward" else ""))
        elif self.torch_rooted(node) and (
            attr in DYNAMIC_TORCH_PARTS or (attr.startswith("_") and not is_dunder(attr))
        ):
            self.dynamic(node, dotted_name(node), "changes or bypasses what torch's functions do")
        elif attr.startswith("_") and not is_dunder(attr) and self.protected_root(node.value):
            self.dynamic(node, dotted_name(node), "reaches into a module's private internals")
        elif self.answer and derivative_kernel(attr):
            self.derivative_kernel(node, dotted_name(node))
        elif self.answer and attr in KNOWN_TYPING_HELPERS:
            self.unknown(node, f".{attr}", "evaluates code hidden in strings")
        elif self.answer and not self._known_attribute(attr) and not self._under_autograd(node):
            self.unknown(
                node, dotted_name(node), "is not a tensor, torch, F or math attribute the grader knows"
            )
        self.generic_visit(node)

    def _known_attribute(self, attr: str) -> bool:
        return is_dunder(attr) or attr in known_answer_attributes() or attr in self.own_attributes

    @staticmethod
    def _under_autograd(node: ast.Attribute) -> bool:
        """``torch.autograd.functional.jacobian``: its autograd finding says it all."""
        parts = set(dotted_name(node).split("."))
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
        if name is not None and not dotted_name(target).startswith(WRITABLE_TORCH_PREFIXES):
            self.monkeypatch(
                target, dotted_name(target), "deletes" if isinstance(target.ctx, ast.Del) else "replaces"
            )

    def visit_Constant(self, node) -> None:
        # A string naming autograd is how `getattr(t, name)` or `**{"requires_grad": True}`
        # would reach it; docstrings and messages never equal one of these names.
        if isinstance(node.value, str) and node.value in AUTOGRAD_ATTRS:
            self.autograd(node, repr(node.value))
        elif self.answer and isinstance(node.value, str) and derivative_kernel(node.value):
            self.derivative_kernel(node, repr(node.value))

    def visit_Call(self, node) -> None:
        func = node.func
        for keyword in node.keywords:
            if keyword.arg == "requires_grad" and not is_false(keyword.value):
                self.autograd(keyword, "requires_grad=")
            elif (keyword.arg == "weights_only" and not is_true(keyword.value)) or (
                keyword.arg == "allow_pickle" and not is_false(keyword.value)
            ):
                self.dynamic(
                    keyword,
                    f"{keyword.arg}={dotted_name(keyword.value)}",
                    "unpickles a file, which can run any code",
                )
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "inference_mode":
            mode = (
                node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if is_false(mode) or (mode is not None and not isinstance(mode, ast.Constant)):
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
                        node, f"{called}(…, {dotted_name(arg)})", "looks up an attribute by a computed name"
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
                    and not is_dunder(attr)
                    and target is not None
                    and self.protected_root(target)
                ):
                    self.dynamic(node, f'{called}(…, "{attr}")', "reaches into a module's private internals")
