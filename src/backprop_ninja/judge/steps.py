"""Notebook 4: the first wrong step inside a student's ``manual_backward``, by notebook 1's checks.

``chain.stage_message`` localises from the seven gradients ``manual_backward`` returns. Most
learners also name the steps between them as the lecture does (``dlogits``, ``dh``,
``dhpreact``, ``dhprebn``, ``dembcat``, ``demb``); their values when the function returns
(``calling.locals_at_return``) say which step goes wrong first, and that step is judged by the
notebook that teaches it (notebook 2's check for dlogits, notebook 3's for dhprebn, notebook 1's
for the others), on its right input.

A local variable is evidence only where nothing contradicts it: a step is blamed only if its
input is a step found right (or it is the first step), if the gradient it feeds directly is
wrong, and if that gradient is what the right formula makes of the student's value for the
step (a ``dlogits`` left without its ``/ n`` while ``dW2`` divides is not a wrong step). Any
doubt, and the message stays the stage's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .check import TOLERANCES, CheckResult

# The steps in backward order, each with the step it is computed from.
STEPS = (
    ("dlogits", None),
    ("dh", "dlogits"),
    ("dhpreact", "dh"),
    ("dhprebn", "dhpreact"),
    ("dembcat", "dhprebn"),
    ("demb", "dembcat"),
)
# The step each parameter's gradient is made from, and the gradient each step makes directly.
FEEDS = {"W2": "dlogits", "b2": "dlogits", "bngain": "dhpreact", "bnbias": "dhpreact"}
FEEDS |= {"W1": "dhprebn", "b1": "dhprebn", "C": "demb"}
MAKES = {"dlogits": "W2", "dhpreact": "bnbias", "dhprebn": "W1", "demb": "C"}

JudgeStep = Callable[[str, torch.Tensor], CheckResult]


def parameter_from_step(step: str, value: torch.Tensor, params, cache, Xb) -> torch.Tensor:
    """The gradient the right formula makes of ``value`` for ``step`` (``MAKES[step]``)."""
    if step == "dlogits":
        return cache["h"].T @ value
    if step == "dhpreact":
        return value.sum(0, keepdim=True)
    if step == "dhprebn":
        return cache["embcat"].T @ value
    C = params["C"]
    return torch.zeros_like(C).index_add_(0, Xb.reshape(-1), value.reshape(-1, C.shape[1]).to(C.dtype))


def first_wrong_step(
    parameter: str,
    local_values: Mapping[str, object],
    grads: Mapping[str, object],
    right: Mapping[str, bool],
    judge_step: JudgeStep,
    inputs: tuple,
) -> str | None:
    """The first wrong step before ``parameter``'s gradient in the student's code, with notebook
    1–3's diagnosis of it, or None when the local values cannot say so without a doubt.

    ``right[p]``: whether the returned gradient of ``p`` is right; ``judge_step(step, value)``
    checks a step's value against its right one on the right input; ``inputs`` are
    ``(params, cache, Xb)`` of the call.
    """
    last = [name for name, _ in STEPS].index(FEEDS[parameter])
    known_right: str | None = None
    for step, source in STEPS[: last + 1]:
        made = MAKES.get(step)
        if made is not None and right.get(made, False):
            known_right = step  # the gradient it makes is right: so is the chain up to here
            continue
        value = local_values.get(step)
        if not isinstance(value, torch.Tensor) or value.is_complex():
            known_right = None
            continue
        result = judge_step(step, value.detach())
        if result.ok:
            known_right = step
            continue
        if source is not None and known_right != source:
            return None  # its input is not known to be right: blaming it would be a guess
        if made is not None and not _consistent(step, value, grads.get(made), inputs):
            return None  # the returned gradient is not made of this value: it is not the cause
        after = f" ({source} before it is right)" if source else ""
        return f"in your code, {step} is the first wrong step{after}: {result.message}"
    return None


def _consistent(step: str, value: torch.Tensor, returned: object, inputs: tuple) -> bool:
    """The returned gradient is the right formula applied to the student's value of ``step``."""
    if not isinstance(returned, torch.Tensor):
        return False
    try:
        made = parameter_from_step(step, value.detach(), *inputs)
    except (RuntimeError, IndexError, TypeError):
        return False
    returned = returned.detach()
    if made.shape != returned.shape:
        made = made.reshape(returned.shape) if made.numel() == returned.numel() else made
    if made.shape != returned.shape:
        return False
    made, returned = made.to(torch.float64), returned.to(torch.float64)
    return bool(((made - returned).abs() <= TOLERANCES[torch.float32].allowed(made)).all())
