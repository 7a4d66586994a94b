"""The trusted parent: runs the child on the plan's inputs, then judges what came back
(student code never runs in this process)."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

import torch

from ..course import DEPENDENT_TESTS, FORKSERVER_VARIABLE
from ..forkserver import spawn
from ..integrity import (
    CodeCell,
    Submission,
    SubmissionError,
    graded_test_ids,
    one_line,
    read_submission,
    top_level_definitions,
)
from ..judge import messages
from ..judge.calling import Outcome
from ..judge.chain import ORDER
from ..judge.exercises import GRADED_TESTS
from ..judge.problems import Problem
from ..judge.sizes import input_shapes
from ..sandbox import build as sandbox
from ..sandbox.untrusted import UntrustedFile, open_folder, read_untrusted
from .plan import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT,
    FILE_LIMIT_BYTES,
    PACKAGE_PARENT,
    Call,
    Check,
    Plan,
    Verdict,
    build_plan,
)
from .records import valid_record


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
    try:
        submission = read_submission(Path(submitted_path), source_path, notebook_name)
    except SubmissionError as error:
        return {gid: Verdict(False, str(error), Problem.INVALID) for gid in graded_test_ids(notebook_name)}
    return verify_submission(submission, seed=seed, timeout=timeout, memory_mb=memory_mb)


def verify_submission(
    submission: Submission,
    *,
    seed: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> dict[str, Verdict]:
    """``verify_notebook`` for a submission already read (``integrity.read_submission``)."""
    notebook_name = submission.notebook
    tests = graded_test_ids(notebook_name)
    plan = build_plan(notebook_name, seed)
    outcome = _run_child(submission.answers, plan.calls, timeout=timeout, memory_mb=memory_mb)
    if isinstance(outcome, Verdict):  # the child failed as a whole
        return dict.fromkeys(tests, outcome)
    records, cell_errors = outcome
    verdicts = judge_results(plan, records, cell_errors, submission.cells)
    for gid, function in DEPENDENT_TESTS.get(notebook_name, {}).items():
        verdicts[gid] = _dependent_verdict(function, verdicts)
    return verdicts


def judge_results(
    plan: Plan, records: list[dict], cell_errors: dict[str, str], cells: list[CodeCell]
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
    check_: Check, call: Call, record: dict, cell_errors: dict[str, str], cells: list[CodeCell]
) -> Verdict:
    """What came back for one check, judged by the notebook's own check (``Trial.verdict``)."""
    trial, fn = check_.trial, call.function
    status = record["status"]
    if status == "missing":
        return Verdict(False, _missing_message(fn, cell_errors, cells), Problem.MISSING)
    if status == "error" and record.get("autograd"):
        return Verdict(False, messages.called_autograd(fn), Problem.AUTOGRAD)
    if call.wants_dict and status == "bad_type":
        return Verdict(False, messages.not_a_dict(fn, record.get("type", "something else")), Problem.WRONG)
    item = record["items"].get(trial.pick, {"status": "none"}) if status == "dict" else record
    if item["status"] == "autograd":
        return Verdict(False, messages.returned_a_graph(fn), Problem.AUTOGRAD)
    where = messages.fresh_inputs(check_.description)
    if item["status"] == "bad_type":
        message = f"expected a plain torch.Tensor, got {item.get('type', '?')}"
        return Verdict(False, messages.on_inputs(trial.target, where, message), Problem.WRONG)
    try:
        result = trial.verdict(outcome_of_record(record, fn, _argument_names(trial)))
    except Exception as error:  # an absurd tensor (sparse, meta …) must not stop grading
        return Verdict(
            False,
            one_line(f"{trial.target}: the result cannot be compared ({type(error).__name__}: {error})"),
            Problem.WRONG,
        )
    if result.ok:
        return Verdict(True, f"{trial.target} is right on fresh inputs", None)
    assert result.problem is not None
    if result.problem.in_the_answer:
        return Verdict(
            False, one_line(messages.on_inputs(trial.target, where, result.message), 300), Problem.WRONG
        )
    return Verdict(False, one_line(result.message, 300), result.problem)


def _argument_names(trial) -> set[str]:
    """What a child may say an answer changed in place: an argument, or an entry of one."""
    return set(trial.arg_names) | set(input_shapes(trial.args, trial.arg_names))


def outcome_of_record(record: dict, function: str, arguments: Collection[str] = ()) -> Outcome:
    """A child's record as the outcome of the call, as if the call had been made here (what it
    says was changed in place counts only where it names one of ``arguments``)."""
    changed = tuple(name for name in record.get("changed", ()) if name in arguments)
    status = record["status"]
    if status == "not_implemented":
        return Outcome.failed(Problem.NOT_IMPLEMENTED, messages.not_implemented(function))
    if status == "error":
        hint = (
            " — answers may use only their arguments, torch, F, math and what answer cells define"
            if record["error"].startswith("NameError")
            else ""
        )
        return Outcome.failed(Problem.ERROR, f"{function} raised {record['error']}{hint}")
    if status == "dict":
        items = record["items"].items()
        steps = {k: v["value"] for k, v in record.get("steps", {}).items() if v["status"] == "tensor"}
        return Outcome.answered(
            {key: item.get("value") for key, item in items if item["status"] != "none"}, changed, steps
        )
    return Outcome.answered(record.get("value"), changed)


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


def _dependent_verdict(function: str, gradient_verdicts: dict[str, Verdict]) -> Verdict:
    """Right only if every gradient is; else the first failure in the order the backward pass
    reaches the gradients (``chain.ORDER``), the one the notebook's training test names."""
    order = [f"test_d{parameter}" for parameter in ORDER]
    failing = [gid for gid in order if gid in gradient_verdicts and not gradient_verdicts[gid].ok]
    failing += [gid for gid, v in gradient_verdicts.items() if not v.ok and gid not in order]
    failed = [gradient_verdicts[gid] for gid in failing]
    if not failed:
        return Verdict(True, f"every gradient of {function} is right on fresh inputs")
    return Verdict(
        False,
        one_line(f"needs every gradient of {function} right; first failure: {failed[0].message}", 300),
        failed[0].problem,
    )


def child_environment(workdir: str) -> dict[str, str]:
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


def _start_child(workdir: str, out, err) -> subprocess.Popen | sandbox.SandboxedProcess:
    """The child, in a session of its own with a clean environment: in a sandbox that sees
    only ``workdir`` writable when grading sandboxes; else a fork of the grading fork server
    when one runs (torch already imported), or a new interpreter."""
    argv = [sys.executable, "-s", "-m", "backprop_ninja.verify", "--child", workdir]
    streams = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": err}
    if sandbox.enabled():
        env = {**child_environment(workdir), "HOME": sandbox.SANDBOX_HOME, "TMPDIR": "/tmp"}
        return sandbox.SandboxedProcess(
            argv, writable=[Path(workdir)], cwd=workdir, env={}, extra_env=env, **streams
        )
    server = os.environ.get(FORKSERVER_VARIABLE)
    return spawn(
        argv, cwd=workdir, env=child_environment(workdir), close_fds=True, server_path=server, **streams
    )


def _run_child(
    answers: list[CodeCell], calls: list[Call], *, timeout: float, memory_mb: int
) -> Verdict | tuple[list[dict], dict[str, str]]:
    """Run the answers in a child process: (records, cell errors), or a failed Verdict."""
    workdir = tempfile.mkdtemp(prefix="bpn-verify-")
    folder = None
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
            [
                {
                    "function": c.function,
                    "args": c.args,
                    "wants_dict": c.wants_dict,
                    "arg_names": list(c.arg_names),
                }
                for c in calls
            ],
            Path(workdir, "inputs.pt"),
        )
        # The child's streams are the parent's own files, outside its folder: nothing the
        # child can replace (by a FIFO, say) is ever opened by name.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            # A fork of the grading fork server when one runs (torch already imported),
            # else a new interpreter; either way a session of its own, in a clean environment.
            process = _start_child(workdir, out, err)
            try:
                # Taken once the sandbox has its folder (a size-capped tmpfs when sandboxed):
                # what the child leaves is read through it, with care.
                folder = open_folder(workdir)
                returncode = process.wait(timeout=timeout)
                if returncode != 0:
                    return Verdict(False, _crash_message(returncode, err), Problem.CRASH)
                return _read_results(folder, len(calls))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait()
                return Verdict(
                    False,
                    f"the answers did not finish within {timeout:g} s — an endless loop, or far too slow",
                    Problem.TIMEOUT,
                )
            finally:
                _kill_group(process)  # whatever the answers left running in the background
                if isinstance(process, sandbox.SandboxedProcess):
                    process.close()  # its folder's tmpfs goes with it: the results are read
    except Exception as error:  # e.g. no space to write the inputs: still a verdict, never a crash
        return Verdict(
            False, one_line(f"the answers could not be run ({type(error).__name__}: {error})"), Problem.CRASH
        )
    finally:
        if folder is not None:
            os.close(folder)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(process: subprocess.Popen | sandbox.SandboxedProcess) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group (new session)


def _crash_message(returncode: int, stderr) -> str:
    """Why the child failed; ``stderr``: the parent's own file of the child's stderr."""
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
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 4000))
        lines = [line for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        tail = f": {lines[-1]}" if lines else ""
    except OSError:
        pass
    return one_line(
        f"the process running the answers exited with code {returncode} before "
        f"reporting (os._exit, sys.exit or a crash in an answer cell){tail}",
        300,
    )


def _read_results(folder: int, expected_calls: int) -> Verdict | tuple[list[dict], dict[str, str]]:
    """The child's results.pt, read from its folder (open as ``folder``) with care."""
    bad = Verdict(False, "the process running the answers returned unreadable results", Problem.BAD_OUTPUT)
    try:
        data = read_untrusted(folder, "results.pt", FILE_LIMIT_BYTES)
    except UntrustedFile as error:
        return Verdict(
            False, f"the process running the answers left no readable results: {error}", Problem.BAD_OUTPUT
        )
    except OSError:
        return bad
    try:
        raw = torch.load(io.BytesIO(data), weights_only=True)  # tensors and plain containers only
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
    return [valid_record(r, nested=True) for r in raw["calls"]], cell_errors
