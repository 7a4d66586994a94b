"""The scanner's checks of ``import`` statements (a mixin of ``visitor.CellScanner``)."""

from __future__ import annotations

import ast

from .rules import (
    ADDED_CELL_MODULES,
    ALLOWED_IMPORTS_TEXT,
    ATTRIBUTE_GETTERS,
    AUTOGRAD_ATTRS,
    AUTOGRAD_MODULES,
    AUTOGRAD_TORCH_ATTRS,
    DYNAMIC_MODULES,
    DYNAMIC_TORCH_PARTS,
)
from .scope import Context, answer_import_allowed, is_dunder, is_module_path


class ImportChecks:
    """Import checks. The scanner provides the state and the reporting methods declared here."""

    answer: bool  # the cell is an answer cell
    scopes: list  # the function scopes the visitor is in (empty: module level)
    ctx: Context

    def where(self) -> str:
        raise NotImplementedError

    def add(self, node: ast.AST, kind: str, message: str) -> None:
        raise NotImplementedError

    def autograd(self, node: ast.AST, what: str) -> None:
        raise NotImplementedError

    def dynamic(self, node: ast.AST, what: str, why: str = "reaches into the interpreter") -> None:
        raise NotImplementedError

    def monkeypatch(self, node: ast.AST, what: str, verb: str = "replaces") -> None:
        raise NotImplementedError

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
            self._check_import(node, full if is_module_path(full) else module, bound, full)

    def _check_import(self, node, module: str, bound: str | None, origin: str | None) -> None:
        parts = module.lstrip(".").split(".")
        protected = self.ctx.protected_bindings
        if bound is not None and not self.scopes and bound in protected and protected[bound] != origin:
            self.monkeypatch(node, bound, "rebinds")
        if module.startswith(AUTOGRAD_MODULES) or parts[0] == "functorch":
            self.autograd(node, f"import {module}")
        elif parts[0] in DYNAMIC_MODULES:
            if self.answer or parts[0] not in ADDED_CELL_MODULES:
                self.dynamic(node, f"import {module}")
        elif parts[0] == "torch" and any(
            p in DYNAMIC_TORCH_PARTS or (p.startswith("_") and not is_dunder(p)) for p in parts[1:]
        ):
            self.dynamic(node, f"import {module}", "changes or bypasses what torch's functions do")
        elif self.answer and not answer_import_allowed(module):
            what = "the course package" if parts[0] == "backprop_ninja" else f"`{module}`"
            self.add(
                node,
                "forbidden_import",
                f"{self.where()} imports {what} — answer cells may import only {ALLOWED_IMPORTS_TEXT}",
            )
