"""The sizes of a case (n, H, V, D, B) and a number hard-coded where one of them belongs.

A student who writes ``32`` or ``view(-1, 10)`` passes on the notebook's batch and fails on
fresh inputs; ``hard_coded`` says which size the number was, and where the function can
read it from its own inputs (``input_shapes`` of the call: ``logprobs.shape[1]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

# What each size is called, how to get it in an answer, and the lecture's value(s).
SIZE_NAMES = {
    "n": ("batch size", "x.shape[0] of an input inside the function (e.g. logits.shape[0])"),
    "H": ("hidden size", "h.shape[1] or W1.shape[1]"),
    "V": ("vocabulary size", "logits.shape[1] or C.shape[0]"),
    "D": ("n_embd", "C.shape[1] or emb.shape[2]"),
    "B": ("block size", "Xb.shape[1] or emb.shape[1]"),
}
LECTURE_SIZES = {"n": (32,), "H": (64, 200), "V": (27,), "D": (10,), "B": (3,)}

Sizes = Mapping[str, int]
InputShapes = Mapping[str, tuple[int, ...]]  # a call's tensor arguments by name (input_shapes)


def input_shapes(args: tuple, names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The shapes of a call's tensor arguments by the names a student knows them by
    (``logprobs``, or ``cache['emb']`` for a tensor in a dict argument)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, arg in zip(names, args):
        if isinstance(arg, torch.Tensor):
            shapes[name] = tuple(arg.shape)
        elif isinstance(arg, dict):
            shapes.update(
                {f"{name}[{k!r}]": tuple(v.shape) for k, v in arg.items() if isinstance(v, torch.Tensor)}
            )
    return shapes


def read_from_input(size: int, inputs: InputShapes | None) -> str | None:
    """Where the function can read ``size`` from its own inputs: ``logprobs.shape[1]``."""
    for name, shape in (inputs or {}).items():
        if size in shape:
            return f"{name}.shape[{shape.index(size)}]"
    return None


def hard_coded_kind(value: int, sizes: Sizes, kinds: set[str] | None = None) -> str | None:
    """The size (n, H, V, D, B) whose lecture value ``value`` is, where that size is another
    here (``kinds``: only among these)."""
    for key, lecture in LECTURE_SIZES.items():
        if value in lecture and key in sizes and sizes[key] != value and (kinds is None or key in kinds):
            return key
    return None


def hard_coded(
    value: int, sizes: Sizes | None, want: int | None = None, inputs: InputShapes | None = None
) -> str | None:
    """If ``value`` is the lecture's size of something that has another size here: the advice.

    ``want``, the size the dimension should have, narrows it to the sizes that dimension can
    be: 10 where the vocabulary size belongs is not a hard-coded n_embd. ``inputs``, the
    shapes of the function's arguments, say where it can read the size instead.
    """
    if not sizes:
        return None
    kinds = {key for key, size in sizes.items() if size == want} if want is not None else None
    key = hard_coded_kind(value, sizes, kinds)
    if key is not None:
        name, how = SIZE_NAMES[key]
        how = read_from_input(sizes[key], inputs) or how
        return (
            f"a hard-coded {name} {value} (here it is {sizes[key]}: a number typed in, or a value from "
            f"outside the function) — use {how}"
        )
    if (
        value == 30
        and sizes.get("B", 3) * sizes.get("D", 10) != 30
        and want in (None, sizes.get("B", 3) * sizes.get("D", 10))
    ):
        return f"a hard-coded block size × n_embd = 30 (here {sizes['B'] * sizes['D']}) — use emb.shape"
    return None


def hard_coded_sizes(values: list[int], sizes: Sizes | None, inputs: InputShapes | None = None) -> str | None:
    """Several of the lecture's sizes hard-coded at once (``view(32, 3, 10)``): each named with
    its size here, and where the function can read them; None for fewer than two."""
    if not sizes:
        return None
    named: dict[str, int] = {}  # each size once, in the order the numbers come
    for value in values:
        key = hard_coded_kind(value, sizes)
        if key is not None:
            named.setdefault(key, value)
    if len(named) < 2:
        return None
    listed = ", ".join(f"{SIZE_NAMES[key][0]} {value} (here {sizes[key]})" for key, value in named.items())
    reads = [read_from_input(sizes[key], inputs) for key in named]
    where = ", ".join(r for r in reads if r) or "the inputs' shapes"
    return f"hard-coded sizes: {listed} — read each from the function's inputs: {where}"
