"""Trusted verification of a submission's answers, outside the student's kernel.

Public API (stable — the grading pipeline relies on it)::

    verify_notebook(submitted_path, notebook_name, *, seed=None, timeout=60,
                    source_path=None, memory_mb=2048) -> dict[str, Verdict]
        # test grade_id → Verdict, for every graded test of the notebook

    Verdict(ok: bool,            # the answer is right on every fresh trial
            message: str,        # one line for the student (the first failure)
            problem: str | None) # None if ok, else one of PROBLEMS
    Verdict.flagged -> bool      # problem == "autograd": show it as an integrity flag

    PROBLEMS = ("wrong", "error", "missing", "autograd", "timeout", "crash", "bad_output",
                "invalid")

How it works. This process (the *parent*) draws fresh cases from secret seeds
(``secrets``, or ``seed`` in tests) with the hidden tests' shapes
(``testing.hidden_specs_for``), computes the true gradients and keeps them in memory. It
saves only the inputs of each call (function name + arguments) to a private temporary
directory and starts a *child*, ``python -m backprop_ninja.verify --child DIR``: no stdin,
a clean environment, that directory as working directory, its own process group, and
limits on memory, CPU time and file size that it sets on itself before any student code
runs (not in a ``preexec_fn``: Python documents that as unsafe in a process with threads,
and torch starts threads). The child deletes its input files once loaded, turns autograd off (grad mode off;
``torch.autograd.grad``, ``backward``, ``torch.func`` transforms and ``enable_grad`` raise),
runs ``cells.ANSWER_PRELUDE`` and then the submission's answer cells — statement by
statement, so that a stray debugging line does not keep a function from being defined —
calls each function on private copies of its inputs and saves what came back. The parent
loads that with ``torch.load(weights_only=True)`` (no code can run while loading) and
compares with ``check.check``: student code never runs in the process that decides.

Every trial of a test must pass. A tensor returned with ``requires_grad`` or a
``grad_fn``, or a call of the disabled autograd, fails as ``autograd``. A timeout, a crash
or unreadable output fails every test of the notebook with the reason; nothing the child
does can raise an exception in the parent. The submitted file is only ever opened for
reading.

Notebook 4's ``test_training`` has no gradient of its own: its verdict follows the seven
gradient verdicts (ok only if all pass; otherwise the first failure's message). Training
with correct gradients is then a matter of arithmetic the course's code does, and the
kernel's own training test can only take points away, never grant them.

What is not guarded: the answer code still runs as the grader's user, so it can read or
write whatever that user can (the limits stop runaway memory, CPU and output, not file
access or a deliberately detached grandchild process). Run grading in a container or as an
unprivileged user if that matters. Answers may use only their arguments, torch, F, math,
what the answer cells define and what they import: a helper defined in a cell the student
added is not run here, so the call fails with NameError (and says so).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

from .cells import ANSWER_PRELUDE
from .course import FORKSERVER_VARIABLE
from .exercises import GRADED_TESTS, Trial, private_copy
from .forkserver import spawn
from .grading import sandbox
from .integrity import (
    DEPENDENT_TESTS,
    CodeCell,
    SubmissionError,
    graded_test_ids,
    load_submission,
    one_line,
    top_level_definitions,
)
from .model import PARAM_NAMES

PROBLEMS = ("wrong", "error", "missing", "autograd", "timeout", "crash", "bad_output", "invalid")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048  # on top of what the child uses once torch is imported
FILE_LIMIT_BYTES = 64 * 2**20  # results, and anything the answers print
MAX_RESULT_ELEMENTS = 2**20  # far beyond any gradient here; keeps the results file small
SEED_BOUND = 2**31
PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the directory that holds backprop_ninja


@dataclass(frozen=True)
class Verdict:
    """The trusted verdict on one graded test. ``bool(verdict)`` is whether it passed."""

    ok: bool
    message: str
    problem: str | None = None

    @property
    def flagged(self) -> bool:
        """An integrity flag (autograd), not merely a wrong answer."""
        return self.problem == "autograd"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.message}"


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class _Call:
    function: str
    args: tuple
    wants_dict: bool  # manual_backward returns {parameter: gradient}


@dataclass(frozen=True)
class _Check:
    grade_id: str
    trial: Trial  # with the expected answer (never leaves this process)
    description: str  # the fresh case, without its secret seed
    call: int  # index into the plan's calls


@dataclass(frozen=True)
class _Plan:
    calls: list[_Call]
    checks: list[_Check]


def secret_seeds(seed: int | None, count: int = 3) -> list[int]:
    """``count`` distinct seeds: from the OS's secure source, or reproducibly from ``seed``."""
    rng = random.Random(seed) if seed is not None else None
    seeds: list[int] = []
    while len(seeds) < count:
        value = secrets.randbelow(SEED_BOUND) if rng is None else rng.randrange(SEED_BOUND)
        if value not in seeds:
            seeds.append(value)
    return seeds


def build_plan(notebook_name: str, seed: int | None = None) -> _Plan:
    """The calls to make and the checks to run on their results, for fresh secret cases."""
    from .exercises import Case
    from .testing import hidden_specs_for

    seeds = secret_seeds(seed)
    cases: dict = {}
    calls: list[_Call] = []
    checks: list[_Check] = []
    call_index: dict[tuple[str, int], int] = {}
    for grade_id, exercise in GRADED_TESTS[notebook_name].items():
        for number, spec in enumerate(hidden_specs_for(exercise, seeds)):
            if spec not in cases:
                cases[spec] = Case.fresh(spec)
            trial = exercise.trial(cases[spec])
            key = (trial.function, number)
            if key not in call_index:  # manual_backward: one call serves seven checks
                call_index[key] = len(calls)
                calls.append(_Call(trial.function, trial.args, trial.pick is not None))
            description = spec.describe().removeprefix(f"seed {spec.seed}, ")
            checks.append(_Check(grade_id, trial, description, call_index[key]))
    return _Plan(calls, checks)


# --------------------------------------------------------------------------- the parent
def verify_notebook(
    submitted_path,
    notebook_name: str,
    *,
    seed: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    source_path=None,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> dict[str, Verdict]:
    """Check a submission's answers on fresh secret inputs, in a separate process.

    ``source_path``: the instructor's notebook (default: solutions/backprop_ninja/<name>),
    which says which cells are answer cells. Returns a Verdict for every graded test.
    """
    if notebook_name not in GRADED_TESTS:
        raise ValueError(f"unknown notebook {notebook_name!r}; expected one of {sorted(GRADED_TESTS)}")
    tests = graded_test_ids(notebook_name)
    try:
        cells, _ = load_submission(Path(submitted_path), source_path, notebook_name)
    except SubmissionError as error:
        return {gid: Verdict(False, str(error), "invalid") for gid in tests}
    answers = [c for c in cells if c.role == "answer"]
    plan = build_plan(notebook_name, seed)
    outcome = _run_child(answers, plan.calls, timeout=timeout, memory_mb=memory_mb)
    if isinstance(outcome, Verdict):  # the child failed as a whole
        return {gid: outcome for gid in tests}
    records, cell_errors = outcome
    verdicts = _judge(plan, records, cell_errors, cells)
    for gid, function in DEPENDENT_TESTS.get(notebook_name, {}).items():
        verdicts[gid] = _dependent_verdict(function, list(verdicts.values()))
    return verdicts


def _judge(
    plan: _Plan, records: list[dict], cell_errors: dict[str, str], cells: list[CodeCell]
) -> dict[str, Verdict]:
    verdicts: dict[str, Verdict] = {}
    for check_ in plan.checks:
        if check_.grade_id in verdicts and not verdicts[check_.grade_id].ok:
            continue  # the first failure is the message
        verdict = _judge_one(check_, plan.calls[check_.call], records[check_.call], cell_errors, cells)
        if not verdict.ok or check_.grade_id not in verdicts:
            verdicts[check_.grade_id] = verdict
    return verdicts


def _judge_one(
    check_: _Check, call: _Call, record: dict, cell_errors: dict[str, str], cells: list[CodeCell]
) -> Verdict:
    from .check import check

    trial, fn = check_.trial, call.function
    status = record["status"]
    if status == "missing":
        return Verdict(False, _missing_message(fn, cell_errors, cells), "missing")
    if status == "not_implemented":
        return Verdict(False, f"{fn} is not implemented yet", "error")
    if status == "error":
        if record.get("autograd"):
            return Verdict(
                False,
                f"{fn} called autograd, which is switched off while grading — compute the gradient by hand",
                "autograd",
            )
        hint = (
            " — answers may use only their arguments, torch, F, math and what answer cells define"
            if record["error"].startswith("NameError")
            else ""
        )
        return Verdict(False, one_line(f"{fn} raised {record['error']}{hint}", 300), "error")
    if call.wants_dict:
        if status != "dict":
            return Verdict(
                False,
                f"{fn} must return a dict of gradients keyed by parameter name, "
                f"got {record.get('type', 'something else')}",
                "wrong",
            )
        record = record["items"].get(trial.pick, {"status": "none"})
        status = record["status"]
    if status == "autograd":
        return Verdict(
            False,
            f"{fn} returned a tensor that carries an autograd graph "
            "(requires_grad or grad_fn) — compute the gradient by hand",
            "autograd",
        )
    if status == "bad_type":
        return Verdict(
            False,
            f"{trial.target} on fresh inputs ({check_.description}): expected a "
            f"plain torch.Tensor, got {record.get('type', '?')}",
            "wrong",
        )
    got = record["value"] if status == "tensor" else None
    try:
        result = check(
            trial.target,
            got,
            trial.expected,
            batch_size=trial.batch_size,
            alternatives=trial.alternatives,
            scale=trial.scale,
            same_dtype=True,
        )
    except Exception as error:  # an absurd tensor (sparse, meta …) must not stop grading
        return Verdict(
            False,
            one_line(f"{trial.target}: the result cannot be compared ({type(error).__name__}: {error})"),
            "wrong",
        )
    if result.ok:
        return Verdict(True, f"{trial.target} is right on fresh inputs", None)
    return Verdict(
        False,
        one_line(f"{trial.target} on fresh inputs ({check_.description}): {result.message}", 300),
        "wrong",
    )


def _missing_message(function: str, cell_errors: dict[str, str], cells: list[CodeCell]) -> str:
    def defines(cell: CodeCell) -> bool:
        return cell.python is not None and function in top_level_definitions(ast.parse(cell.python))

    in_answers = [c for c in cells if c.role == "answer" and defines(c)]
    if in_answers:
        errors = [cell_errors[c.label] for c in in_answers if c.label in cell_errors]
        if errors:
            return one_line(f"{function} could not be defined: its answer cell raised {errors[0]}", 300)
        return f"{function} is not defined after running the answer cells"
    broken = [c for c in cells if c.role == "answer" and c.python is None and c.label == function]
    if broken:
        return f"{function} is not defined: its answer cell does not parse ({broken[0].syntax_error})"
    if any(c.role == "added" and defines(c) for c in cells):
        return f"{function} is defined outside an answer cell — move it into its answer cell"
    return f"{function} is not defined in any answer cell"


def _dependent_verdict(function: str, gradient_verdicts: list[Verdict]) -> Verdict:
    failed = [v for v in gradient_verdicts if not v.ok]
    if not failed:
        return Verdict(True, f"every gradient of {function} is right on fresh inputs")
    return Verdict(
        False,
        one_line(f"needs every gradient of {function} right; first failure: {failed[0].message}", 300),
        failed[0].problem,
    )


def _child_env(workdir: str) -> dict[str, str]:
    """Only what Python needs: no secrets, no tokens, nothing inherited."""
    return {
        "PATH": os.defpath,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(PACKAGE_PARENT),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _start_child(workdir: str, out, err) -> subprocess.Popen:
    """The child, in a session of its own with a clean environment: in a sandbox that sees
    only ``workdir`` writable when grading sandboxes; else a fork of the grading fork server
    when one runs (torch already imported), or a new interpreter."""
    argv = [sys.executable, "-s", "-m", "backprop_ninja.verify", "--child", workdir]
    streams = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": err}
    if sandbox.enabled():
        env = {**_child_env(workdir), "HOME": sandbox.SANDBOX_HOME, "TMPDIR": "/tmp"}
        return sandbox.SandboxedProcess(
            argv, writable=[Path(workdir)], cwd=workdir, env={}, extra_env=env, **streams
        )
    server = os.environ.get(FORKSERVER_VARIABLE)
    return spawn(argv, cwd=workdir, env=_child_env(workdir), close_fds=True, server_path=server, **streams)


def _run_child(
    answers: list[CodeCell], calls: list[_Call], *, timeout: float, memory_mb: int
) -> Verdict | tuple[list[dict], dict[str, str]]:
    """Run the answers in a child process: (records, cell errors), or a failed Verdict."""
    workdir = tempfile.mkdtemp(prefix="bpn-verify-")
    try:
        job = {
            "cells": [{"label": c.label, "python": c.python} for c in answers if c.python is not None],
            "limits": {
                "memory_bytes": memory_mb * 2**20,
                "cpu_seconds": int(timeout) + 5,
                "file_bytes": FILE_LIMIT_BYTES,
            },
        }
        Path(workdir, "job.json").write_text(json.dumps(job), encoding="utf-8")
        torch.save(
            [{"function": c.function, "args": c.args, "wants_dict": c.wants_dict} for c in calls],
            Path(workdir, "inputs.pt"),
        )
        with open(Path(workdir, "stdout.txt"), "wb") as out, open(Path(workdir, "stderr.txt"), "wb") as err:
            # A fork of the grading fork server when one runs (torch already imported),
            # else a new interpreter; either way a session of its own, in a clean environment.
            process = _start_child(workdir, out, err)
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait()
                return Verdict(
                    False,
                    f"the answers did not finish within {timeout:g} s — an endless loop, or far too slow",
                    "timeout",
                )
            finally:
                _kill_group(process)  # whatever the answers left running in the background
                if isinstance(process, sandbox.SandboxedProcess):
                    process.close()
        if returncode != 0:
            return Verdict(False, _crash_message(returncode, Path(workdir, "stderr.txt")), "crash")
        return _read_results(Path(workdir, "results.pt"), len(calls))
    except Exception as error:  # e.g. no space to write the inputs: still a verdict, never a crash
        return Verdict(
            False, one_line(f"the answers could not be run ({type(error).__name__}: {error})"), "crash"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group (new session)
    except (ProcessLookupError, PermissionError):
        pass


def _crash_message(returncode: int, stderr_path: Path) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        why = {
            "SIGXCPU": " (CPU time limit)",
            "SIGKILL": " (memory or CPU limit?)",
            "SIGSEGV": " (a crash: runaway recursion or memory?)",
        }.get(name, "")
        return f"the process running the answers was killed by {name}{why}"
    tail = ""
    try:
        lines = [
            line
            for line in stderr_path.read_bytes()[-4000:].decode("utf-8", "replace").splitlines()
            if line.strip()
        ]
        tail = f": {lines[-1]}" if lines else ""
    except OSError:
        pass
    return one_line(
        f"the process running the answers exited with code {returncode} before "
        f"reporting (os._exit, sys.exit or a crash in an answer cell){tail}",
        300,
    )


def _read_results(path: Path, expected_calls: int) -> Verdict | tuple[list[dict], dict[str, str]]:
    bad = Verdict(False, "the process running the answers returned unreadable results", "bad_output")
    try:
        raw = torch.load(path, weights_only=True)  # tensors and plain containers only
    except Exception:
        return bad
    if not (
        isinstance(raw, dict)
        and isinstance(raw.get("calls"), list)
        and len(raw["calls"]) == expected_calls
        and isinstance(raw.get("cell_errors"), dict)
    ):
        return bad
    cell_errors = {str(k): one_line(str(v), 200) for k, v in raw["cell_errors"].items()}
    return [_valid_record(r, nested=True) for r in raw["calls"]], cell_errors


def _valid_record(record, nested: bool) -> dict:
    """A record as the child should have written it, or a "garbled" stand-in."""
    garbled = {"status": "bad_type", "type": "an unreadable result"}
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return garbled
    status = record["status"]
    if status == "tensor":
        return record if isinstance(record.get("value"), torch.Tensor) else garbled
    if status == "dict" and nested and isinstance(record.get("items"), dict):
        return {
            "status": "dict",
            "items": {str(k): _valid_record(v, nested=False) for k, v in record["items"].items()},
        }
    if status == "error":
        return {
            "status": "error",
            "error": one_line(str(record.get("error", "?")), 240),
            "autograd": record.get("autograd") is True,
        }
    if status in ("none", "missing", "not_implemented", "autograd"):
        return {"status": status}
    if status == "bad_type":
        return {"status": "bad_type", "type": one_line(str(record.get("type", "?")), 80)}
    return garbled


# ---------------------------------------------------------------------------- the child
class AutogradDisabled(RuntimeError):
    """Raised in the child when an answer calls the autograd machinery."""


def _refuse(*args, **kwargs):
    raise AutogradDisabled("autograd is switched off while grading — compute the gradient by hand")


def _apply_limits(limits: dict) -> None:
    """Memory (address space) beyond what is in use now, CPU seconds, file size, no cores."""
    import resource

    def lower(which, soft, hard=None):
        try:
            resource.setrlimit(which, (soft, soft if hard is None else hard))
        except (ValueError, OSError):
            pass  # a limit the system does not allow us to set: the parent's timeout still holds

    try:
        in_use = next(
            int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:")
        )
        lower(resource.RLIMIT_AS, in_use + limits["memory_bytes"])
    except (OSError, StopIteration, ValueError):
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(usage.ru_utime + usage.ru_stime) + limits["cpu_seconds"]
    lower(resource.RLIMIT_CPU, cpu, cpu + 2)
    lower(resource.RLIMIT_FSIZE, limits["file_bytes"])
    lower(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit fails, not kills


_INFERENCE_MODE = torch.inference_mode  # captured before any answer cell runs


@typing.no_type_check  # it replaces parts of torch on purpose
def _disable_autograd() -> None:
    """Grad mode off for good, and the usual ways to compute a gradient raise."""
    original_set = torch.set_grad_enabled
    original_requires_grad_ = torch.Tensor.requires_grad_
    original_set(False)

    def set_grad_enabled(mode):  # no_grad() calls set_grad_enabled(False): keep that working
        if mode:
            _refuse()
        return original_set(False)

    def requires_grad_(self, requires_grad=True):
        if requires_grad:
            _refuse()
        return original_requires_grad_(self, False)

    torch.set_grad_enabled = torch.autograd.set_grad_enabled = set_grad_enabled
    torch.autograd.grad_mode.set_grad_enabled = set_grad_enabled
    torch.enable_grad = torch.autograd.enable_grad = torch.autograd.grad_mode.enable_grad = _refuse
    torch.autograd.grad = torch.autograd.backward = _refuse
    torch.Tensor.backward = _refuse
    torch.Tensor.requires_grad_ = requires_grad_
    for name in ("vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"):
        setattr(torch.autograd.functional, name, _refuse)
    import torch.func as transforms

    for name in ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize"):
        setattr(transforms, name, _refuse)
    original_inference_mode = torch.inference_mode

    def inference_mode(mode=True):  # leaving inference mode would re-enable autograd
        if not mode:
            _refuse()
        return original_inference_mode(True)

    torch.inference_mode = torch.autograd.inference_mode = inference_mode
    torch.autograd.grad_mode.inference_mode = inference_mode
    original_c_set = torch._C._set_grad_enabled

    def c_set_grad_enabled(mode):  # what torch's own grad-mode classes call underneath
        if mode:
            _refuse()
        return original_c_set(False)

    torch._C._set_grad_enabled = c_set_grad_enabled
    import torch.autograd.forward_ad as forward_ad
    import torch.autograd.graph as graph

    forward_ad.dual_level = forward_ad.make_dual = _refuse  # (unpack_dual: printing uses it)
    graph._engine_run_backward = _refuse


def _run_cell(python: str, label: str, namespace: dict) -> str | None:
    """Run a cell statement by statement; the first error (if any), as one line."""
    first = None
    try:
        tree = ast.parse(python)
    except (SyntaxError, ValueError, RecursionError) as error:
        return f"{type(error).__name__}: {error}"
    for statement in tree.body:
        try:
            exec(compile(ast.Module([statement], []), f"<{label}>", "exec"), namespace)
        except BaseException as error:  # SystemExit too: the answers may not end the run
            if first is None:
                first = f"{type(error).__name__}: {error} (line {statement.lineno})"
    return first


def _describe_type(value) -> str:
    kind = type(value)
    if isinstance(value, torch.Tensor):
        return f"a {kind.__name__} (a subclass of torch.Tensor); return a plain tensor"
    return kind.__name__


def _sanitise(value) -> dict:
    """What the parent may see of a returned value: plain detached tensors and words."""
    if value is None:
        return {"status": "none"}
    if type(value) is torch.Tensor:
        if value.requires_grad or value.grad_fn is not None:
            return {"status": "autograd"}
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            return {"status": "bad_type", "type": f"a {value.layout} tensor on {value.device}"}
        if value.numel() > MAX_RESULT_ELEMENTS:
            return {"status": "bad_type", "type": f"a tensor of {value.numel():,} elements"}
        return {"status": "tensor", "value": value.detach().clone()}
    return {"status": "bad_type", "type": _describe_type(value)}


def _call(function, call: dict, set_grad_mode) -> dict:
    args = tuple(private_copy(arg) for arg in call["args"])
    set_grad_mode(False)
    try:
        # Inference mode also stops what grad mode does not: forward-mode AD and the autograd
        # engine reached through private entry points.
        with _INFERENCE_MODE():
            result = function(*args)
    except NotImplementedError:
        return {"status": "not_implemented"}
    except BaseException as error:
        return {
            "status": "error",
            "error": one_line(f"{type(error).__name__}: {error}", 240),
            "autograd": isinstance(error, AutogradDisabled),
        }
    if call["wants_dict"]:
        if not isinstance(result, dict):
            return {"status": "bad_type", "type": type(result).__name__}
        return {"status": "dict", "items": {name: _sanitise(dict.get(result, name)) for name in PARAM_NAMES}}
    return _sanitise(result)


def _child_main(workdir: Path) -> None:
    """Run the answers on the saved inputs and save what they return (see the module doc)."""
    import builtins

    exit_now, save = os._exit, torch.save  # captured before any student code runs
    set_grad_mode = torch._C._set_grad_enabled
    job = json.loads((workdir / "job.json").read_text(encoding="utf-8"))
    _apply_limits(job["limits"])
    calls = torch.load(workdir / "inputs.pt", weights_only=True)
    for name in ("job.json", "inputs.pt"):  # the answers must not find the other trials' inputs
        (workdir / name).unlink()
    torch.set_num_threads(1)
    _disable_autograd()

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(ANSWER_PRELUDE, "<prelude>", "exec"), namespace)
    cell_errors: dict[str, str] = {}
    for cell in job["cells"]:
        error = _run_cell(cell["python"], cell["label"], namespace)
        if error is not None:
            cell_errors.setdefault(cell["label"], error)

    records = []
    for call in calls:
        function = namespace.get(call["function"])
        records.append(_call(function, call, set_grad_mode) if callable(function) else {"status": "missing"})
    with open(workdir / "results.pt", "wb") as handle:
        save({"calls": records, "cell_errors": cell_errors}, handle)
    sys.stdout.flush()
    exit_now(0)  # skip interpreter shutdown: no atexit handler or thread of the answers runs


def main(argv: list[str] | None = None) -> int:
    """``python -m backprop_ninja.verify NOTEBOOK.ipynb NAME``: print the verdicts.

    (``--child DIR`` is how the verifier starts its child; not for people.)
    """
    parser = argparse.ArgumentParser(description="Verify a submission's answers on fresh inputs.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("submitted", type=Path, nargs="?")
    parser.add_argument("notebook", nargs="?", help="e.g. 1_atomic_backprop (default: the file's name)")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child_main(args.child)
        return 0
    if args.submitted is None:
        parser.error("give the submitted notebook")
    verdicts = verify_notebook(
        args.submitted, args.notebook or args.submitted.stem, source_path=args.source, timeout=args.timeout
    )
    for grade_id, verdict in verdicts.items():
        print(f"{grade_id:16s} {verdict}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
