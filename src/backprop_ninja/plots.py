"""The notebooks' figures: the forward graph, what dlogits looks like, batchnorm's gradient,
the training curve.

Every function draws a new figure and returns it (the notebook shows it); none of them
computes anything the notebooks grade.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import FancyArrowPatch

from .model import FORWARD_STEPS, consumers
from .training import lecture_learning_rate

# Two colours used throughout: parameters, and tensors read by two steps (their gradient
# is the sum of two contributions).
PARAM_COLOUR = "#cfe3f7"
BRANCH_COLOUR = "#f9d49b"
PLAIN_COLOUR = "#eeeeee"


def _numpy(tensor: torch.Tensor):
    return tensor.detach().to(torch.float64).numpy()


def _shape(values, name) -> str:
    if not values or name not in values:
        return ""
    return " " + "×".join(map(str, values[name].shape))


def draw_forward_graph(values: dict[str, torch.Tensor] | None = None):
    """The exploded forward pass as a graph, top (input) to bottom (loss).

    Each intermediate sits on the spine in the order it is computed; parameters and data
    sit to the left of the step that first reads them. A tensor read by two steps (orange)
    gets gradient from both, and the two contributions add up. Arrows that skip steps are
    drawn as arcs on the right. ``values`` (name → tensor) adds each tensor's shape.
    """
    steps = [step.name for step in FORWARD_STEPS]
    y: dict[str, float] = {name: -i for i, name in enumerate(steps)}
    x = dict.fromkeys(steps, 0.0)
    for step in FORWARD_STEPS:  # inputs that are not intermediates: left of their reader
        outside = [name for name in step.inputs if name not in y]
        for k, name in enumerate(outside):
            offset = 0.0 if len(outside) == 1 else 0.3 - 0.6 * k / (len(outside) - 1)
            y[name], x[name] = y[step.name] + offset, -2.2

    fig, ax = plt.subplots(figsize=(7.5, 10.5))
    arc_side = 1
    for step in FORWARD_STEPS:
        for name in step.inputs:
            start, end = (x[name], y[name]), (x[step.name], y[step.name])
            skips = x[name] == x[step.name] and y[name] - y[step.name] > 1
            if skips:  # alternate the bend so that stacked arcs stay apart
                arc_side = -arc_side
                style = f"arc3,rad={-0.35 if arc_side > 0 else -0.55}"
                start, end = (0.7, y[name]), (0.7, y[step.name])
            else:
                style = "arc3,rad=0"
            ax.add_patch(
                FancyArrowPatch(
                    start,
                    end,
                    connectionstyle=style,
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color="#555555",
                    lw=1,
                    shrinkA=9,
                    shrinkB=9,
                )
            )
    for name in y:
        if name not in steps:  # a parameter or the data
            colour = PARAM_COLOUR
        elif len(consumers(name)) > 1:
            colour = BRANCH_COLOUR
        else:
            colour = PLAIN_COLOUR
        ax.text(
            x[name],
            y[name],
            name + _shape(values, name),
            ha="center",
            va="center",
            fontsize=9,
            family="monospace",
            bbox={"boxstyle": "round,pad=0.3", "fc": colour, "ec": "#777777"},
        )
    ax.set_xlim(-3.2, 2.6)
    ax.set_ylim(min(y.values()) - 0.8, 0.8)
    ax.axis("off")
    handles = [
        plt.Rectangle((0, 0), 1, 1, fc=c, ec="#777777") for c in (PARAM_COLOUR, BRANCH_COLOUR, PLAIN_COLOUR)
    ]
    ax.legend(
        handles,
        ["parameter / data", "read by two steps: gradients add", "intermediate"],
        loc="lower right",
        fontsize=8,
        frameon=False,
    )
    ax.set_title("The forward pass runs down; backprop climbs back up", fontsize=11)
    fig.tight_layout()
    return fig


def show_dlogits(probs: torch.Tensor, dlogits: torch.Tensor, Yb: torch.Tensor, *, rows: int = 16):
    """The softmax probabilities beside dlogits for the first ``rows`` examples.

    The correct character of each example is circled: it is the one entry of its row whose
    gradient is negative (raise this logit); every other entry is positive (lower it), in
    proportion to the probability the model gives it.
    """
    probs, dlogits = _numpy(probs[:rows]), _numpy(dlogits[:rows])
    targets = Yb[:rows].numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    image = left.imshow(probs, cmap="Greys", vmin=0)
    left.set_title("probs = softmax(logits)")
    fig.colorbar(image, ax=left, fraction=0.03)
    # Separate scales for the two signs: the one negative entry per row is much larger
    # than the positive ones, which would otherwise all look white.
    norm = TwoSlopeNorm(
        vcenter=0.0, vmin=min(float(dlogits.min()), -1e-12), vmax=max(float(dlogits.max()), 1e-12)
    )
    image = right.imshow(dlogits, cmap="RdBu_r", norm=norm)
    right.set_title("dlogits (red: push the logit down, blue: up)")
    fig.colorbar(image, ax=right, fraction=0.03)
    for ax in (left, right):
        ax.scatter(
            targets, range(len(targets)), s=60, facecolors="none", edgecolors="#d4a017", linewidths=1.5
        )
        ax.set_xlabel("character")
        ax.set_ylabel("example in the batch")
    fig.tight_layout()
    return fig


def show_batchnorm_gradient(dhpreact: torch.Tensor, dhprebn: torch.Tensor, bnraw: torch.Tensor):
    """What batchnorm removes from the gradient, one bar per hidden unit.

    Left: the column sums of dhpreact and dhprebn (the latter is zero: shifting a whole
    column changes nothing after normalisation). Right: each column's dot product with bnraw
    (zero for dhprebn: scaling a whole column changes nothing either).
    """
    dhpreact, dhprebn, bnraw = (_numpy(t) for t in (dhpreact, dhprebn, bnraw))
    units = range(dhpreact.shape[1])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.4), sharey=False)
    for ax, reduce, title in (
        (left, lambda d: d.sum(0), "column sums  Σᵢ d[i, j]"),
        (right, lambda d: (d * bnraw).sum(0), "dot with bnraw  Σᵢ d[i, j]·bnraw[i, j]"),
    ):
        ax.bar(units, reduce(dhpreact), color="#9bbbe0", label="dhpreact (into batchnorm)")
        ax.bar(units, reduce(dhprebn), color="#c0392b", width=0.5, label="dhprebn (out of batchnorm)")
        ax.axhline(0, color="black", lw=0.8)
        ax.text(
            0.99,
            0.97,
            f"dhprebn: largest |value| {abs(reduce(dhprebn)).max():.0e}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            color="#c0392b",
            fontsize=9,
        )
        ax.set_title(title)
        ax.set_xlabel("hidden unit j")
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curve(losses: list[float], *, learning_rate=lecture_learning_rate, points: int = 200):
    """log10 of the minibatch loss, averaged over ``points`` equal chunks of the run (as the
    lecture averages over 1,000 steps), with the learning-rate step marked."""
    steps = len(losses)
    chunk = max(1, steps // points)
    usable = steps - steps % chunk
    curve = torch.tensor(losses[:usable]).log10().view(-1, chunk).mean(1).numpy()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(torch.arange(len(curve)).numpy() * chunk + chunk / 2, curve)
    changes = [s for s in range(1, steps) if learning_rate(s) != learning_rate(s - 1)]
    for s in changes:
        ax.axvline(s, color="#c0392b", ls="--", lw=1)
        ax.text(
            s,
            curve.max(),
            f" lr {learning_rate(s - 1):g} → {learning_rate(s):g}",
            color="#c0392b",
            va="top",
            fontsize=9,
        )
    ax.set_xlabel("step")
    ax.set_ylabel(f"log10 loss (mean of {chunk} steps)")
    ax.set_title("Training with the manual backward pass")
    fig.tight_layout()
    return fig
