"""The mistake catalogue: wrong answers, the cause each one's message must name, and the share named.

A catalogue is a folder of TOML files (the project's is ``tests/mistakes/``), one per
notebook, each a list of ``[[mistake]]`` tables::

    [[mistake]]
    name = "bnvar without eps"
    test = "test_dbnvar"                 # the graded test (grade_id) of this file's notebook
    cause = ["missing ε|eps"]            # every phrase must be in the message (any case);
                                         # "a|b": either spelling will do
    expect = "fail"                      # "warn": right, but must print a warning;
                                         # "pass": an unusual right answer, passes silently
    code = '''
    def grad_bnvar(bnvar, dbnvar_inv):
        return -0.5 * bnvar**-1.5 * dbnvar_inv
    '''

A file may also give ``base`` (answer code) and mistakes as ``edit = [["old", "new"], …]``
on it, for long functions such as notebook 4's ``manual_backward``.

Each mistake runs through the notebook's *visible* test (the notebook's batch and the public
fresh inputs) and through its hidden test (other seeds): both must fail (the grade agrees with
the notebook's verdict), and the visible message must name the cause.
``python -m backprop_ninja.maintainer.catalogue [FOLDER]`` (``make diagnose``) prints every verdict and
the share of mistakes whose message names the cause, for two halves apart: the development
half (``FOLDER/*.toml``, the rules were written from it) and the held-out half
(``FOLDER/held_out/*.toml``, written before the rules and never tuned to: how they generalise).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

from ..cases import Case
from ..cells import ANSWER_PRELUDE
from ..course import REPO_ROOT
from ..judge.exercises import GRADED_TESTS

DEFAULT_FOLDER = REPO_ROOT / "tests" / "mistakes"
HELD_OUT = "held_out"  # the subfolder of the held-out half
HIDDEN_SEEDS = (9001, 9002, 9003)
TARGET_SHARE = 0.9


@dataclass(frozen=True)
class Mistake:
    notebook: str
    name: str
    test: str
    cause: tuple[str, ...]
    code: str
    expect: str = "fail"


@dataclass(frozen=True)
class Outcome:
    mistake: Mistake
    visible_failed: bool
    hidden_failed: bool
    message: str  # the visible test's message (or its printed warning)

    @property
    def agrees(self) -> bool:
        """The notebook's verdict is the grade: the hidden test fails exactly when the visible one does."""
        return self.visible_failed == self.hidden_failed

    @property
    def named(self) -> bool:
        """The message names the cause (and a mistake fails, a warning passes with its note)."""
        expected_verdict = self.visible_failed == (self.mistake.expect == "fail")
        text = self.message.lower()
        return expected_verdict and self.agrees and all(_phrase_in(c, text) for c in self.mistake.cause)


def _phrase_in(phrase: str, text: str) -> bool:
    """``phrase`` (or one of its ``|``-separated spellings) is in ``text`` (lower case)."""
    return any(spelling.strip().lower() in text for spelling in phrase.split("|"))


def load(folder: Path = DEFAULT_FOLDER) -> list[Mistake]:
    """Every mistake of the catalogue in ``folder``, file by file."""
    mistakes = []
    for path in sorted(Path(folder).glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        notebook = data["notebook"]
        for entry in data["mistake"]:
            code = entry.get("code")
            if code is None:
                code = data["base"]
                for old, new in entry["edit"]:
                    if old not in code:
                        raise ValueError(f"{path.name}: {entry['name']}: {old!r} is not in the base code")
                    code = code.replace(old, new, 1)
            cause = entry.get("cause", [])
            mistakes.append(
                Mistake(
                    notebook,
                    entry["name"],
                    entry["test"],
                    tuple([cause] if isinstance(cause, str) else cause),
                    code,
                    entry.get("expect", "fail"),
                )
            )
    return mistakes


@functools.lru_cache(maxsize=4)
def notebook_case(notebook: str) -> Case:
    """The batch of the notebook's setup cell (its model, its minibatch)."""
    import torch

    from .. import data, model

    splits = data.load_splits()
    g = torch.Generator().manual_seed(model.LECTURE_SEED)
    n_hidden = 200 if notebook.startswith("4") else 64
    params = model.init_params(len(splits.vocab), n_hidden=n_hidden, generator=g)
    Xb, Yb = data.minibatch(splits.Xtr, splits.Ytr, batch_size=32, generator=g)
    return Case.from_batch(params, Xb, Yb)


def run(mistake: Mistake) -> Outcome:
    """The mistake through the visible test and the hidden one."""
    from ..testing import GradeFailure, test_hidden, test_on

    exercise = GRADED_TESTS[mistake.notebook][mistake.test]
    namespace: dict = {"__name__": "__catalogue__"}
    exec(compile(ANSWER_PRELUDE + "\n" + mistake.code, f"<{mistake.name}>", "exec"), namespace)
    function = namespace[exercise.function]

    def verdict(run_test) -> tuple[bool, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                run_test()
            except GradeFailure as failure:
                return True, str(failure)
        return False, out.getvalue()

    visible_failed, message = verdict(lambda: test_on(exercise, function, notebook_case(mistake.notebook)))
    hidden_failed, _ = verdict(lambda: test_hidden(exercise, function, seeds=HIDDEN_SEEDS))
    return Outcome(mistake, visible_failed, hidden_failed, " ".join(message.split()))


def share_named(outcomes: list[Outcome]) -> float:
    """The share of the mistakes (the unusual right answers aside) whose message names the cause."""
    mistakes = [o for o in outcomes if o.mistake.expect != "pass"]
    return sum(o.named for o in mistakes) / max(len(mistakes), 1)


def halves(folder: Path = DEFAULT_FOLDER) -> dict[str, list[Mistake]]:
    """The development half (``folder``) and the held-out half (``folder/held_out``), by name."""
    held_out = Path(folder) / HELD_OUT
    return {"development": load(folder), "held-out": load(held_out) if held_out.is_dir() else []}


def main(argv: list[str] | None = None) -> int:
    """Print each mistake's verdict and message, then each half's share whose message names the cause."""
    parser = argparse.ArgumentParser(description="Run the mistake catalogue through the notebooks' tests.")
    parser.add_argument("folder", type=Path, nargs="?", default=DEFAULT_FOLDER)
    parser.add_argument("--verbose", "-v", action="store_true", help="print every message, not only misses")
    parser.add_argument(
        "--half", choices=("development", "held-out", "both"), default="both", help="which half to run"
    )
    parser.add_argument(
        "--verdicts-only",
        action="store_true",
        help="print whether each entry fails (or passes) as it should, never a message: for writing a "
        "batch of mistakes blind to the rules",
    )
    args = parser.parse_args(argv)
    ok = True
    for half, mistakes in halves(args.folder).items():
        if args.half not in ("both", half) or not mistakes:
            continue
        print(f"== the {half} half ({len(mistakes)} entries)")
        outcomes = [run(m) for m in mistakes]
        if args.verdicts_only:
            ok &= _report_verdicts(outcomes)
        else:
            ok &= _report(outcomes, half, verbose=args.verbose)
    return 0 if ok else 1


def _verdict_as_expected(o: Outcome) -> bool:
    """A mistake fails, a warned or unusual right answer passes, on the visible and the hidden test."""
    return o.agrees and o.visible_failed == (o.mistake.expect == "fail")


def _report_verdicts(outcomes: list[Outcome]) -> bool:
    """Each entry's verdicts (visible, hidden) against what it expects, without its message."""
    for o in outcomes:
        mark = "✅" if _verdict_as_expected(o) else "❌"
        seen = f"visible {'fails' if o.visible_failed else 'passes'}, hidden {'fails' if o.hidden_failed else 'passes'}"
        print(
            f"{mark} {o.mistake.notebook}/{o.mistake.test} — {o.mistake.name} (expect {o.mistake.expect}: {seen})"
        )
    return all(_verdict_as_expected(o) for o in outcomes)


def _report(outcomes: list[Outcome], half: str, *, verbose: bool) -> bool:
    """Print one half's verdicts and its share; whether the share meets the target and every unusual
    right answer passes."""
    answers = [o for o in outcomes if o.mistake.expect == "pass"]
    outcomes = [o for o in outcomes if o.mistake.expect != "pass"]
    for o in answers:
        if verbose or not o.named:
            print(
                f"{'✅' if o.named else '❌'} {o.mistake.notebook}/{o.mistake.test} — {o.mistake.name} (right)"
            )
            if not o.named:
                print(f"     a right answer failed: {o.message[:400]}")
    for o in outcomes:
        mark = "✅" if o.named else "❌"
        if verbose or not o.named:
            print(f"{mark} {o.mistake.notebook}/{o.mistake.test} — {o.mistake.name}")
            print(f"     must name: {' + '.join(o.mistake.cause)}")
            print(f"     got: {o.message[:400]}")
            if not o.agrees:
                print("     the hidden test's verdict differs from the visible one")
    per_notebook: dict[str, list[Outcome]] = {}
    for o in outcomes:
        per_notebook.setdefault(o.mistake.notebook, []).append(o)
    for notebook, group in per_notebook.items():
        print(f"{notebook:24s} {sum(o.named for o in group):3d}/{len(group):3d} named")
    share = share_named(outcomes)
    agree = sum(o.agrees for o in outcomes)
    print(
        f"{half}: mistakes whose message names the cause: {sum(o.named for o in outcomes)}/{len(outcomes)} "
        f"= {share:.0%} (target ≥ {TARGET_SHARE:.0%}); visible verdict = grade for {agree}/{len(outcomes)}"
    )
    if answers:
        print(f"{half}: unusual right answers that pass: {sum(o.named for o in answers)}/{len(answers)}")
    return share >= TARGET_SHARE and all(o.named for o in answers)


if __name__ == "__main__":
    sys.exit(main())
