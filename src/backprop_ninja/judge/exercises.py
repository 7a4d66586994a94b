"""What each graded exercise asks for, and how its trial on a case is judged.

An exercise names the student's function, the tensors it is called with and how the true
answer is computed; a *case* (``cases``) is one set of inputs. The same trials serve the
notebooks' tests (in the student's kernel) and the out-of-kernel verifier, which compares
in a process the student's code never touches. A wrong answer is tried against the
exercise's known wrong formulas (``mistakes``), so its message can name the cause.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..cases import Case
from ..model import PARAM_NAMES, consumers, forward_fused
from ..reference import GRADIENT_NAMES, batchnorm_vjp, local_gradient
from . import chain, messages, steps
from .calling import Outcome
from .check import CheckResult, check
from .diagnosis import Candidate, Structural
from .mistakes import (
    atomic_candidates,
    batchnorm_variants,
    cross_entropy_variants,
    forgotten_factor_candidates,
    wrong_tensor_candidates,
)
from .problems import Problem
from .sizes import input_shapes
from .terms import batchnorm_structure, branch_structure, cross_entropy_structure, lazily, manual_structure


# ------------------------------------------------------------------------ the exercises
@dataclass(frozen=True)
class Trial:
    """One call of a student function and the answer it must give."""

    target: str  # e.g. "dprobs"
    function: str  # e.g. "grad_probs"
    args: tuple  # tensors (detached) or plain values, passed positionally
    expected: torch.Tensor
    batch_size: int
    description: str
    # advice → a wrong answer; or a function that makes that dict, called only for a wrong answer
    alternatives: dict[str, Candidate] | Callable[[], dict[str, Candidate]] = field(default_factory=dict)
    pick: str | None = None  # the key to take from a dict result (manual_backward)
    scale: float | None = None  # the case's largest true gradient (see check's ``scale``)
    sizes: dict[str, int] = field(default_factory=dict)  # n, H, V, D, B (see check's ``sizes``)
    arg_names: tuple[str, ...] = ()  # the arguments' names, for messages
    siblings: dict[str, torch.Tensor] = field(default_factory=dict)  # every key's answer (pick)
    structure: Structural | None = None  # the right answer's terms, fitted to a wrong one (terms.py)
    # pick: the alternatives given the student's whole dict (a wrong step must explain every key)
    alternatives_given: Callable[[dict], dict[str, Candidate]] | None = None
    # pick: the first wrong step among the function's local variables (steps.first_wrong_step)
    localise: Callable[..., str | None] | None = None

    @property
    def wants_local_values(self) -> bool:
        """Whether a call should keep the function's local variables (``calling.call``)."""
        return self.localise is not None

    @classmethod
    def on(cls, case: Case, target: str, function: str, args: tuple, expected: torch.Tensor, **more) -> Trial:
        """A trial on ``case``: its batch size, description, gradient scale and sizes."""
        return cls(
            target,
            function,
            args,
            expected,
            case.batch_size,
            case.description,
            scale=case.gradient_scale,
            sizes=case.sizes,
            **more,
        )

    def judge(self, got, returned: dict | None = None) -> CheckResult:
        """``check`` what came back for this trial: its shape, its dtype and its values
        (``returned``: manual_backward's whole dict, which the alternatives must agree with)."""
        alternatives = self.alternatives
        if returned is not None and self.alternatives_given is not None:
            alternatives = functools.partial(self.alternatives_given, returned)
        return check(
            self.target,
            got,
            self.expected,
            batch_size=self.batch_size,
            alternatives=alternatives,
            scale=self.scale,
            same_dtype=True,
            sizes=self.sizes,
            structure=self.structure,
            inputs=input_shapes(self.args, self.arg_names),
        )

    def verdict(self, outcome: Outcome) -> CheckResult:
        """The one check of a call's outcome: what the notebook's test shows and what the
        verifier grades. A failed call fails with its problem; for ``pick``, the gradient is
        taken from the dict, and a wrong one is told where the chain goes wrong first."""
        if outcome.problem is not None:
            return CheckResult.failed(self.target, outcome.problem, outcome.message)
        got = outcome.returned
        if self.pick is not None:
            if not isinstance(got, dict):
                return CheckResult.failed(
                    self.target, Problem.KEYS, messages.not_a_dict(self.function, type(got).__name__)
                )
            if self.pick not in got:
                return CheckResult.failed(self.target, Problem.KEYS, self._key_problem(got))
            got = got[self.pick]
        result = self.judge(got, outcome.returned if self.pick is not None else None)
        if not result.ok and self.pick is not None:
            message = self._localised(outcome.returned, got, result, outcome.local_values)
            result = replace(result, message=message)
        if outcome.changed and result.problem == Problem.MISMATCH:
            # nothing else explains the wrong answer: what it changed in place comes first
            cause = messages.changed_in_place_first(self.function, outcome.changed)
            result = replace(result, message=f"{cause} — {result.message}")
        elif outcome.changed:
            note = messages.changed_in_place(self.function, outcome.changed)
            result = replace(result, notes=(*result.notes, note))
        return result

    def _localised(self, grads: dict, got, result: CheckResult, local_values: dict | None = None) -> str:
        """Notebook 4: another key's right value, or where the chain goes wrong first and why.

        A value that is another key's right one is put under the wrong key for sure when that
        key holds this one's (a swap); otherwise a formula that gives the same value may too.
        A wrong value no formula explains is told by the first wrong step among the function's
        local variables, when they say it without a doubt (``steps.first_wrong_step``).
        """
        pick = str(self.pick)
        same = lambda g, e: check(pick, g, e, scale=self.scale, same_dtype=True).ok  # noqa: E731
        other = chain.other_keys_value(got, self.siblings, pick, same)
        right = self.right_keys(grads)
        why = result.message
        if result.problem == Problem.MISMATCH and local_values and self.localise is not None:
            why = self.localise(grads, right, local_values) or why
        stage = chain.stage_message(right, pick)
        located = f"{stage} — {chain.without_step_said(why, stage)}"
        if other is None:
            return located
        wrong_key = chain.wrong_key_message(pick, other)
        swapped = isinstance(grads.get(other), torch.Tensor) and same(grads[other], self.siblings[pick])
        explained = result.problem in (Problem.ALTERNATIVE, Problem.TERM)
        return f"{located}; or {wrong_key}" if explained and not swapped else wrong_key

    def right_keys(self, grads: dict) -> dict[str, bool]:
        """Notebook 4: which of the seven gradients are right."""
        return {
            p: check(p, grads.get(p), expected, scale=self.scale, same_dtype=True).ok
            for p, expected in self.siblings.items()
        }

    def _key_problem(self, grads: dict) -> str:
        keys = [str(k) for k in grads]
        pick = str(self.pick)
        near = [k for k in keys if k.lower().removeprefix("d").removeprefix("_") == pick.lower()]
        return messages.misnamed_key(near[0], pick, PARAM_NAMES) if near else messages.missing_key(pick, keys)


@dataclass(frozen=True)
class AtomicExercise:
    """Notebook 1: ``d<target> = grad_<target>(*args)``, one step of the chain rule."""

    target: str
    args: tuple[str, ...]

    @property
    def function(self) -> str:
        return f"grad_{self.target}"

    @property
    def grade_id(self) -> str:
        return f"test_d{self.target}"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        upstream = {arg: case.upstream(arg) for arg in self.args if arg.startswith("d")}
        args = tuple(upstream[a] if a in upstream else values[a] for a in self.args)
        truth = local_gradient(self.target, values, upstream)
        alternatives: dict[str, Candidate] = {}
        if len(truth.branches) > 1:
            for consumer, branch in truth.branches.items():
                others = " and ".join(c for c in truth.branches if c != consumer)
                alternatives[
                    f"matches only the branch through {consumer}: {self.target} is also used by "
                    f"{others}, so its gradient is the sum of both branches (+=)"
                ] = branch
        alternatives.update(atomic_candidates(self.target, values, upstream))
        given = dict(zip(self.args, args))

        def all_alternatives() -> dict[str, Candidate]:  # the wrong tensors only for a wrong answer
            swapped = wrong_tensor_candidates(self.target, self.args, values, upstream, given)
            left_out = forgotten_factor_candidates(self.target, self.args, values, upstream)
            return {**alternatives, **left_out, **swapped}

        return Trial.on(
            case,
            f"d{self.target}",
            self.function,
            args,
            truth.total,
            alternatives=all_alternatives,
            arg_names=self.args,
            structure=lazily(branch_structure, truth.branches),
        )


# The lecture's order, loss → embedding. Arguments starting with "d" are upstream gradients.
ATOMIC_EXERCISES = tuple(
    AtomicExercise(target, args)
    for target, args in (
        ("logprobs", ("logprobs", "Yb")),
        ("probs", ("probs", "dlogprobs")),
        ("counts_sum_inv", ("counts", "dprobs")),
        ("counts_sum", ("counts_sum", "dcounts_sum_inv")),
        ("counts", ("counts_sum_inv", "dprobs", "dcounts_sum")),
        ("norm_logits", ("counts", "dcounts")),
        ("logit_maxes", ("dnorm_logits",)),
        ("logits", ("logits", "dnorm_logits", "dlogit_maxes")),
        ("h", ("W2", "dlogits")),
        ("W2", ("h", "dlogits")),
        ("b2", ("dlogits",)),
        ("hpreact", ("hpreact", "h", "dh")),
        ("bngain", ("bnraw", "dhpreact")),
        ("bnbias", ("dhpreact",)),
        ("bnraw", ("bngain", "dhpreact")),
        ("bnvar_inv", ("bndiff", "dbnraw")),
        ("bnvar", ("bnvar", "dbnvar_inv")),
        ("bndiff2", ("bndiff2", "dbnvar")),
        ("bndiff", ("bndiff", "bnvar_inv", "dbnraw", "dbndiff2")),
        ("bnmeani", ("dbndiff",)),
        ("hprebn", ("hprebn", "dbndiff", "dbnmeani")),
        ("embcat", ("W1", "dhprebn")),
        ("W1", ("embcat", "dhprebn")),
        ("b1", ("dhprebn",)),
        ("emb", ("emb", "dembcat")),
        ("C", ("C", "Xb", "demb")),
    )
)
ATOMIC_BY_TARGET = {exercise.target: exercise for exercise in ATOMIC_EXERCISES}
assert all(len(consumers(e.target)) or e.target in PARAM_NAMES for e in ATOMIC_EXERCISES)


@dataclass(frozen=True)
class CrossEntropyExercise:
    """Notebook 2: ``dlogits = cross_entropy_backward(logits, Yb)`` in one expression."""

    function = "cross_entropy_backward"
    grade_id = "test_dlogits"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        with torch.enable_grad():
            logits = values["logits"].detach().requires_grad_()
            (expected,) = torch.autograd.grad(F.cross_entropy(logits, case.Yb), logits)
        return Trial.on(
            case,
            "dlogits",
            self.function,
            (values["logits"], case.Yb),
            expected,
            alternatives=dict(cross_entropy_variants(values["logits"], case.Yb)),
            arg_names=("logits", "Yb"),
            structure=lazily(cross_entropy_structure, values["logits"], case.Yb),
        )


@dataclass(frozen=True)
class BatchnormExercise:
    """Notebook 3: ``dhprebn = batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv)``."""

    function = "batchnorm_backward"
    grade_id = "test_dhprebn"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        dhpreact = case.upstream("dhpreact")
        expected = batchnorm_vjp(values["hprebn"], values["bngain"], dhpreact, unbiased=True)
        args = (dhpreact, values["bngain"], values["bnraw"], values["bnvar_inv"])
        return Trial.on(
            case,
            "dhprebn",
            self.function,
            args,
            expected,
            alternatives=dict(batchnorm_variants(*args)),
            arg_names=("dhpreact", "bngain", "bnraw", "bnvar_inv"),
            # notebook 4's cache holds the unnormalised input too (judge.steps judges dhprebn here)
            structure=lazily(batchnorm_structure, *args, {k: values[k] for k in ("hprebn", "bndiff")}),
        )


@dataclass(frozen=True)
class ManualBackwardExercise:
    """Notebook 4: ``grads = manual_backward(params, cache, Xb, Yb)``, graded per parameter."""

    parameter: str
    function = "manual_backward"

    @property
    def grade_id(self) -> str:
        return f"test_d{self.parameter}"

    def trial(self, case: Case) -> Trial:
        params = {k: v.detach() for k, v in case.params.items()}
        _, cache = forward_fused(params, case.Xb, case.Yb)
        # Computed only when an answer is wrong: ~25 backward passes per case.
        alternatives = functools.partial(_manual_alternatives, self.parameter, params, cache, case)
        given = functools.partial(_manual_alternatives, self.parameter, params, cache, case)
        return Trial.on(
            case,
            f"d{self.parameter}",
            self.function,
            (params, cache, case.Xb, case.Yb),
            case.reference.grad(self.parameter),
            alternatives=alternatives,
            alternatives_given=lambda returned: given(student=returned),
            pick=self.parameter,
            arg_names=("params", "cache", "Xb", "Yb"),
            structure=lazily(manual_structure, self.parameter, params, cache, case.Xb, case.Yb),
            siblings={p: case.reference.grad(p) for p in PARAM_NAMES},
            localise=functools.partial(_first_wrong_step, self.parameter, params, cache, case),
        )


# The exercise that teaches each step of manual_backward, judging it on the right input.
STEP_EXERCISES: dict[str, CrossEntropyExercise | BatchnormExercise] = {
    "dlogits": CrossEntropyExercise(),
    "dhprebn": BatchnormExercise(),
}


def _first_wrong_step(parameter: str, params, cache, case: Case, grads, right, local_values) -> str | None:
    """``steps.first_wrong_step`` for this case: each step judged by its notebook's check."""
    on_the_chain = replace(case, random_upstream=False)  # each step's input is the loss's

    def judge_step(step: str, value: torch.Tensor) -> CheckResult:
        exercise: CrossEntropyExercise | BatchnormExercise | AtomicExercise = (
            STEP_EXERCISES.get(step) or ATOMIC_BY_TARGET[step.removeprefix("d")]
        )
        return exercise.trial(on_the_chain).judge(value)

    return steps.first_wrong_step(parameter, local_values, grads, right, judge_step, (params, cache, case.Xb))


def _manual_alternatives(
    parameter: str, params, cache, case: Case, student: dict | None = None
) -> dict[str, Candidate]:
    """advice → the parameter's gradient from a backward pass with one known wrong step, and
    the parameter's own step's wrong formulas (as in notebook 1, from the true upstream).

    Given the ``student``'s whole dict, a wrong step counts only if it explains the student's
    other gradients too: a missing tanh step cannot be the cause while dbngain is right.
    """
    variants = chain.variants(params, cache, case.Xb, case.Yb)
    found: dict[str, Candidate] = {
        advice: grads[parameter]
        for advice, grads in variants.items()
        if student is None or chain.explains(grads, student, skip=parameter)
    }
    upstream = {a: case.reference.grad(a) for a in ATOMIC_BY_TARGET[parameter].args if a.startswith("d")}
    found.update(atomic_candidates(parameter, case.reference.values, upstream))
    every = {**case.reference.values, **{f"d{g}": case.reference.grad(g) for g in GRADIENT_NAMES}}
    args = ATOMIC_BY_TARGET[parameter].args
    found.update(wrong_tensor_candidates(parameter, args, case.reference.values, upstream, every))
    return found


MANUAL_BACKWARD_EXERCISES = tuple(ManualBackwardExercise(p) for p in PARAM_NAMES)


# --------------------------------------------------------------------- the course's layout

# For every notebook, its graded test cells (by nbgrader grade_id) and the exercise each
# checks. The training test of notebook 4 is not a gradient: it has no entry here.
GRADED_TESTS: dict[str, dict[str, Any]] = {
    "1_atomic_backprop": {exercise.grade_id: exercise for exercise in ATOMIC_EXERCISES},
    "2_fused_cross_entropy": {"test_dlogits": CrossEntropyExercise()},
    "3_fused_batchnorm": {"test_dhprebn": BatchnormExercise()},
    "4_full_training": {exercise.grade_id: exercise for exercise in MANUAL_BACKWARD_EXERCISES},
}
