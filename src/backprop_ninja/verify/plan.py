"""What the verifier checks: the plan of calls drawn from secret seeds, and its verdicts."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..judge.exercises import GRADED_TESTS, Trial
from ..judge.problems import GRADED_PROBLEMS, Problem

PROBLEMS = tuple(str(problem) for problem in GRADED_PROBLEMS)  # what Verdict.problem may be
DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048  # on top of what the child uses once torch is imported
FILE_LIMIT_BYTES = 64 * 2**20  # results, and anything the answers print
MAX_RESULT_ELEMENTS = 2**20  # far beyond any gradient here; keeps the results file small
SEED_BOUND = 2**31
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the directory that holds backprop_ninja


@dataclass(frozen=True)
class Verdict:
    """The trusted verdict on one graded test. ``bool(verdict)`` is whether it passed."""

    ok: bool
    message: str
    problem: Problem | None = None

    @property
    def flagged(self) -> bool:
        """An integrity flag (autograd), not merely a wrong answer."""
        return self.problem is Problem.AUTOGRAD

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.message}"


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Call:
    function: str
    args: tuple
    wants_dict: bool  # manual_backward returns {parameter: gradient}
    arg_names: tuple[str, ...] = ()  # for saying which argument the answer changed in place


@dataclass(frozen=True)
class Check:
    grade_id: str
    trial: Trial  # with the expected answer (never leaves this process)
    description: str  # the fresh case, without its secret seed
    call: int  # index into the plan's calls


@dataclass(frozen=True)
class Plan:
    calls: list[Call]
    checks: list[Check]


def secret_seeds(seed: int | None, count: int = 3) -> list[int]:
    """``count`` distinct seeds: from the OS's secure source, or reproducibly from ``seed``."""
    rng = random.Random(seed) if seed is not None else None
    seeds: list[int] = []
    while len(seeds) < count:
        value = secrets.randbelow(SEED_BOUND) if rng is None else rng.randrange(SEED_BOUND)
        if value not in seeds:
            seeds.append(value)
    return seeds


def build_plan(notebook_name: str, seed: int | None = None) -> Plan:
    """The calls to make and the checks to run on their results, for fresh secret cases."""
    from ..cases import Case, fresh_specs

    seeds = secret_seeds(seed)
    cases: dict = {}
    calls: list[Call] = []
    checks: list[Check] = []
    call_index: dict[tuple[str, int], int] = {}
    for grade_id, exercise in GRADED_TESTS[notebook_name].items():
        for number, spec in enumerate(fresh_specs(exercise.function, seeds)):
            if spec not in cases:
                cases[spec] = Case.fresh(spec)
            trial = exercise.trial(cases[spec])
            key = (trial.function, number)
            if key not in call_index:  # manual_backward: one call serves seven checks
                call_index[key] = len(calls)
                calls.append(Call(trial.function, trial.args, trial.pick is not None, trial.arg_names))
            description = spec.describe().removeprefix(f"seed {spec.seed}, ")
            checks.append(Check(grade_id, trial, description, call_index[key]))
    return Plan(calls, checks)
