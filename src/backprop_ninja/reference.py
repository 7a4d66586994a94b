"""Reference gradients by PyTorch autograd: the truth every student gradient is checked against."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch

from .model import BN_EPS, FORWARD_STEPS, PARAM_NAMES, STEPS_BY_NAME, consumers, forward_exploded

# Everything that has a gradient: the parameters, then the intermediates up to (not incl.) loss.
GRADIENT_NAMES = PARAM_NAMES + tuple(step.name for step in FORWARD_STEPS[:-1])


def _grad_of(tensor: torch.Tensor) -> torch.Tensor:
    assert tensor.grad is not None, "forward_exploded(retain_grad=True) keeps every gradient"
    return tensor.grad.detach()


@dataclass(frozen=True)
class Reference:
    """The forward values (detached) and dloss/dx for every x in ``GRADIENT_NAMES``."""

    values: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]

    def grad(self, name: str) -> torch.Tensor:
        return self.grads[name.removeprefix("d")]


def reference_gradients(params, Xb, Yb, dtype: torch.dtype = torch.float64) -> Reference:
    """Run the exploded forward pass in ``dtype`` and backpropagate the loss with autograd."""
    with torch.enable_grad():
        leaves = {k: v.detach().to(dtype).requires_grad_() for k, v in params.items()}
        values = forward_exploded(leaves, Xb, Yb, retain_grad=True)
        values["loss"].backward()
    grads = {name: _grad_of(values[name]) for name in GRADIENT_NAMES}
    return Reference({k: v.detach() for k, v in values.items()}, grads)


@dataclass(frozen=True)
class LocalGradient:
    """dloss/dx assembled from x's consumers: ``total`` and each consumer's share (``branches``)."""

    total: torch.Tensor
    branches: dict[str, torch.Tensor]


def local_gradient(
    name: str, values: dict[str, torch.Tensor], upstream: dict[str, torch.Tensor]
) -> LocalGradient:
    """One step of backprop by autograd: dloss/d``name`` given the gradients of its consumers.

    ``upstream`` maps ``"d<consumer>"`` to that consumer's gradient; it need not be the true
    one, which is how the tests check that a student's step obeys the chain rule for any
    upstream gradient. The loss's own gradient is 1.
    """
    branches = {}
    with torch.enable_grad():
        x = values[name].detach().requires_grad_()
        for consumer in consumers(name):
            step = STEPS_BY_NAME[consumer]
            out = step.compute(*(x if arg == name else values[arg].detach() for arg in step.inputs))
            grad_out = torch.ones_like(out) if consumer == "loss" else upstream["d" + consumer]
            (branches[consumer],) = torch.autograd.grad(out, x, grad_outputs=grad_out)
    total = functools.reduce(operator.add, branches.values())  # the branches' sum, in order
    return LocalGradient(total, branches)


def batchnorm_vjp(hprebn, bngain, dhpreact, *, unbiased: bool) -> torch.Tensor:
    """dhprebn by autograd. ``unbiased=False`` keeps the forward values (Bessel's n − 1) but
    differentiates the variance as if it divided by n: the gradient a student gets who writes
    n where the forward pass has n − 1."""
    with torch.enable_grad():
        x = hprebn.detach().requires_grad_()
        mean, var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=True)
        if not unbiased:
            biased = x.var(0, keepdim=True, unbiased=False)
            var = var.detach() + (biased - biased.detach())
        hpreact = bngain * (x - mean) * (var + BN_EPS) ** -0.5
        (grad,) = torch.autograd.grad(hpreact, x, grad_outputs=dhpreact)
    return grad
