"""Where a training step's microseconds go: ``python -m bench.step_breakdown``.

    python -m bench.step_breakdown [--steps 2000] [--repeats 5] [--calls 2000] [--quick]

Two views, in CPU time of this thread (``time.thread_time``: a busy machine disturbs it far
less than wall time), on the training's thread count, median of interleaved repeats:

* **sections of a step** of ``train``'s loop — minibatches (drawn per chunk, shared over its
  steps), forward (``model.forward_to_logits``), manual backward, update (one ``_foreach_add_``
  at the schedule's rate), bookkeeping (the logits kept, the losses computed once per chunk). The loop
  is ``train``'s, with the clock read between sections; ``train`` itself runs in the same
  repeats, so the table shows what the clock reads cost on top;
* **statements of ``manual_backward``** (and of ``forward_to_logits``): the body run one
  statement at a time on one minibatch (the clock around each; the cost of an empty
  statement subtracted).

Both for the model answer (solutions/, the derivation) and for the tuned variant
(``bench/tuned.py``), so that the table says which lines the answer's time is in.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from backprop_ninja.data import Splits, load_splits
from backprop_ninja.model import PARAM_NAMES, forward_fused, forward_to_logits
from backprop_ninja.training import (
    CHUNK_STEPS,
    TRAINING_THREADS,
    lecture_learning_rate,
    minibatch_chunks,
    minibatch_losses,
    torch_threads,
    train,
)

from . import tuned
from .figures import BATCH_SIZE, Start, copy_params
from .solutions import load_solution, solution_source

SECTIONS = ("minibatches", "forward", "manual backward", "update", "bookkeeping")
clock = time.thread_time


def clock_cost(reads: int = 20_000) -> float:
    """Seconds one reading of ``clock`` adds to the interval it ends."""
    began = clock()
    for _ in range(reads):
        clock()
    return (clock() - began) / reads


@torch.inference_mode()
def instrumented_train(params, Xtr, Ytr, backward: Callable, *, steps: int, generator) -> dict[str, float]:
    """``train``'s loop (no progress bar) with the clock read between sections: seconds per
    section, summed over the steps (each still holds one clock read, see ``clock_cost``)."""
    tensors = [params[name] for name in PARAM_NAMES]
    spent = dict.fromkeys(SECTIONS, 0.0)
    step = 0
    buffer = torch.empty(0)
    slots: tuple[torch.Tensor, ...] = ()
    chunks = minibatch_chunks(Xtr, Ytr, steps=steps, batch_size=BATCH_SIZE, generator=generator)
    while True:
        t0 = clock()
        batches = next(chunks, None)
        t1 = clock()
        spent["minibatches"] += t1 - t0
        if batches is None:
            break
        for i, (Xb, Yb) in enumerate(batches):
            t0 = clock()
            cache = forward_to_logits(params, Xb)
            t1 = clock()
            if not slots:
                buffer = cache["logits"].new_empty((CHUNK_STEPS, *cache["logits"].shape))
                slots = buffer.unbind(0)
            slots[i].copy_(cache["logits"])  # train takes it before the backward
            t2 = clock()
            grads = backward(params, cache, Xb, Yb)
            t3 = clock()
            torch._foreach_add_(
                tensors, [grads[name] for name in PARAM_NAMES], alpha=-lecture_learning_rate(step)
            )
            t4 = clock()
            step += 1
            spent["forward"] += t1 - t0
            spent["bookkeeping"] += t2 - t1
            spent["manual backward"] += t3 - t2
            spent["update"] += t4 - t3
        t0 = clock()
        minibatch_losses(buffer[: len(batches)], torch.stack([Yb for _, Yb in batches]))
        spent["bookkeeping"] += clock() - t0
    return spent


@dataclass
class Sections:
    """CPU µs per step: each section's, their sum, and ``train``'s own in the same repeats."""

    us: dict[str, float]
    instrumented_us: float
    train_us: float


def section_breakdown(
    splits: Splits, backwards: dict[str, Callable], *, steps: int, repeats: int
) -> dict[str, Sections]:
    """The sections of a step for each backward, and ``train``'s own time, interleaved."""
    start = Start.lecture(len(splits.vocab))
    cost = clock_cost()
    per_section: dict[str, dict[str, list[float]]] = {k: {s: [] for s in SECTIONS} for k in backwards}
    plain: dict[str, list[float]] = {k: [] for k in backwards}
    # Clock reads that end an interval, per step: one per step for the per-step sections;
    # one per chunk (and one at the end) for the minibatches; bookkeeping has both.
    chunks = -(-steps // CHUNK_STEPS)
    reads = dict.fromkeys(SECTIONS, 1.0) | {
        "minibatches": (chunks + 1) / steps,
        "bookkeeping": 1 + chunks / steps,
    }
    with torch_threads(TRAINING_THREADS):
        for repeat in range(repeats + 1):  # the first round warms up
            for name, backward in backwards.items():
                spent = instrumented_train(
                    copy_params(start.params), splits.Xtr, splits.Ytr, backward, steps=steps,
                    generator=start.generator(),
                )  # fmt: skip
                began = clock()
                train(
                    copy_params(start.params), splits.Xtr, splits.Ytr, backward, steps=steps,
                    generator=start.generator(), progress=False, threads=None,
                )  # fmt: skip
                plain_us = (clock() - began) / steps * 1e6
                if repeat == 0:
                    continue
                plain[name].append(plain_us)
                for section, seconds in spent.items():
                    own = seconds / steps - cost * reads[section]
                    per_section[name][section].append(max(own, 0.0) * 1e6)
    out = {}
    for name in backwards:
        us = {section: statistics.median(v) for section, v in per_section[name].items()}
        out[name] = Sections(us, sum(us.values()), statistics.median(plain[name]))
    return out


# ------------------------------------------------------------------ statements of the answer
def function_statements(source: str) -> tuple[list[str], list[ast.stmt], list[str]]:
    """The first function of ``source``: its parameter names, its body's statements (the
    docstring left out; ``return X`` becomes ``__returned__ = X``) and their source text."""
    tree = ast.parse(textwrap.dedent(source))
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    statements: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.Return) and node.value is not None:
            assign = ast.Assign(targets=[ast.Name("__returned__", ast.Store())], value=node.value)
            node = ast.copy_location(assign, node)
        statements.append(ast.fix_missing_locations(node))
    texts = [" ".join(ast.unparse(node).split()) for node in body]
    return [a.arg for a in function.args.args], statements, texts


@torch.inference_mode()
def statement_breakdown(
    function: Callable, source: str, args: tuple, *, calls: int, repeats: int
) -> tuple[list[tuple[str, float]], float]:
    """CPU µs of each statement of ``function``'s body (its text, median µs), run one at a
    time in the function's globals on ``args``; and µs of one ordinary call, for comparison."""
    names, statements, texts = function_statements(source)
    codes = [
        compile(ast.Module(body=[s], type_ignores=[]), f"<{t[:30]}>", "exec")
        for s, t in zip(statements, texts, strict=True)
    ]
    empty = compile("pass", "<empty>", "exec")
    bound = dict(zip(names, args, strict=True))
    globals_ = function.__globals__
    samples: list[list[float]] = [[] for _ in codes]
    whole: list[float] = []
    with torch_threads(TRAINING_THREADS):
        for repeat in range(repeats + 1):
            spent = [0.0] * len(codes)
            baseline = 0.0
            for _ in range(calls):
                namespace = {**globals_, **bound}
                a = clock()
                exec(empty, namespace)
                baseline += clock() - a
                for i, code in enumerate(codes):
                    a = clock()
                    exec(code, namespace)
                    spent[i] += clock() - a
            a = clock()
            for _ in range(calls):
                function(*args)
            whole_us = (clock() - a) / calls * 1e6
            if repeat == 0:
                continue
            whole.append(whole_us)
            for i, seconds in enumerate(spent):
                samples[i].append(max(seconds - baseline, 0.0) / calls * 1e6)
    return [(text, statistics.median(s)) for text, s in zip(texts, samples, strict=True)], statistics.median(
        whole
    )


def one_step_inputs(splits: Splits) -> tuple:
    """``(params, cache, Xb, Yb)`` of the lecture's first training step."""
    start = Start.lecture(len(splits.vocab))
    params = copy_params(start.params)
    g = start.generator()
    ix = torch.randint(0, splits.Xtr.shape[0], (BATCH_SIZE,), generator=g)
    Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
    with torch.inference_mode():
        _, cache = forward_fused(params, Xb, Yb)
    return params, cache, Xb, Yb


# ------------------------------------------------------------------------------- the report
def answers() -> dict[str, tuple[Callable, str]]:
    """The model answer (from solutions/) and the tuned variant, with their sources."""
    model_answer = load_solution("4_full_training")["manual_backward"]
    return {
        "model answer": (model_answer, solution_source("4_full_training", "manual_backward")),
        "tuned (bench/tuned.py)": (tuned.manual_backward, inspect.getsource(tuned.manual_backward)),
    }


def report(*, steps: int, repeats: int, calls: int) -> str:
    splits = load_splits()
    functions = answers()
    sections = section_breakdown(
        splits, {k: f for k, (f, _) in functions.items()}, steps=steps, repeats=repeats
    )
    names = list(functions)
    lines = [
        f"CPU µs per training step ({TRAINING_THREADS} thread, {steps} steps, median of {repeats} interleaved repeats)",
        "",
        "| section | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for section in SECTIONS:
        lines.append(f"| {section} | " + " | ".join(f"{sections[n].us[section]:.1f}" for n in names) + " |")
    lines.append(
        "| **sum of the sections** | "
        + " | ".join(f"**{sections[n].instrumented_us:.0f}**" for n in names)
        + " |"
    )
    lines.append(
        "| `train` itself, same repeats | " + " | ".join(f"{sections[n].train_us:.0f}" for n in names) + " |"
    )
    params, cache, Xb, Yb = one_step_inputs(splits)
    timed = {
        "forward (model.forward_to_logits)": (
            forward_to_logits,
            inspect.getsource(forward_to_logits),
            (params, Xb),
        ),
        **{name: (f, source, (params, cache, Xb, Yb)) for name, (f, source) in functions.items()},
    }
    for name, (function, source, args) in timed.items():
        rows, whole = statement_breakdown(function, source, args, calls=calls, repeats=repeats)
        lines += [
            "",
            f"{name}: CPU µs per statement (one minibatch, {calls} calls, median of {repeats})",
            "",
            "| µs | statement |",
            "|---:|---|",
        ]
        lines += [f"| {us:.1f} | `{text if len(text) <= 100 else text[:97] + '...'}` |" for text, us in rows]
        lines.append(
            f"| **{sum(us for _, us in rows):.0f}** | the statements' sum (one ordinary call: {whole:.0f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.step_breakdown",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="20 steps and calls, 1 repeat (for CI)")
    args = parser.parse_args(argv)
    steps, repeats, calls = (20, 1, 20) if args.quick else (args.steps, args.repeats, args.calls)
    print(report(steps=steps, repeats=repeats, calls=calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
