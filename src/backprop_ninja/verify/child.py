"""The untrusted child: loads the answer cells and calls them on the plan's inputs, with
autograd disabled and limits set on itself; it only saves what came back.

Kept minimal on purpose: the process it runs in (``python -m backprop_ninja.verify --child``)
imports this module, the plan's constants, torch and the course's exercises, and nothing of
the trusted side (the parent, the integrity scan, the fork server, the sandbox)."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import sys
import typing
from pathlib import Path

import torch

from ..cells import ANSWER_PRELUDE
from ..judge.calling import locals_at_return, modified_arguments, private_copy
from ..judge.steps import STEPS
from ..model import PARAM_NAMES
from ..text import one_line
from .plan import MAX_RESULT_ELEMENTS


# ---------------------------------------------------------------------------- the child
class AutogradDisabled(RuntimeError):
    """Raised in the child when an answer calls the autograd machinery."""


def _refuse(*args, **kwargs):
    raise AutogradDisabled("autograd is switched off while grading — compute the gradient by hand")


def _apply_limits(limits: dict) -> None:
    """Memory (address space) beyond what is in use now, CPU seconds, file size, no cores."""
    import resource

    def lower(which, soft, hard=None):
        # A limit the system does not allow us to set: the parent's timeout still holds.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (soft, soft if hard is None else hard))

    try:
        in_use = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmSize:")
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

    torch.set_grad_enabled = torch.autograd.set_grad_enabled = set_grad_enabled  # type: ignore[misc]  # torch's grad-mode classes, replaced on purpose
    torch.autograd.grad_mode.set_grad_enabled = set_grad_enabled  # type: ignore[misc]  # torch's grad-mode classes, replaced on purpose
    torch.enable_grad = torch.autograd.enable_grad = torch.autograd.grad_mode.enable_grad = _refuse  # type: ignore[misc]  # torch's grad-mode classes, replaced on purpose
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

    torch.inference_mode = torch.autograd.inference_mode = inference_mode  # type: ignore[misc]  # torch's grad-mode classes, replaced on purpose
    torch.autograd.grad_mode.inference_mode = inference_mode  # type: ignore[misc]  # torch's grad-mode classes, replaced on purpose
    original_c_set = torch._C._set_grad_enabled

    def c_set_grad_enabled(mode):  # what torch's own grad-mode classes call underneath
        if mode:
            _refuse()
        return original_c_set(False)

    torch._C._set_grad_enabled = c_set_grad_enabled
    import torch.autograd.forward_ad as forward_ad
    import torch.autograd.graph as graph

    forward_ad.dual_level = forward_ad.make_dual = _refuse  # type: ignore[misc]  # (unpack_dual: printing uses it)
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


def sanitise(value) -> dict:
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


def call_answer(function, call: dict, set_grad_mode) -> dict:
    args = tuple(private_copy(arg) for arg in call["args"])
    set_grad_mode(False)
    local_values: dict = {}
    watching = locals_at_return(function, local_values) if call["wants_dict"] else contextlib.nullcontext()
    try:
        # Inference mode also stops what grad mode does not: forward-mode AD and the autograd
        # engine reached through private entry points.
        with _INFERENCE_MODE(), watching:
            result = function(*args)
    except NotImplementedError:
        return {"status": "not_implemented"}
    except BaseException as error:
        return {
            "status": "error",
            "error": one_line(f"{type(error).__name__}: {error}", 240),
            "autograd": isinstance(error, AutogradDisabled),
        }
    # which arguments it changed in place, named as the notebook's test names them
    changed = modified_arguments(call["args"], args, tuple(call.get("arg_names", ())))
    if call["wants_dict"]:
        if not isinstance(result, dict):
            return {"status": "bad_type", "type": type(result).__name__}
        return {
            "status": "dict",
            "items": {name: sanitise(dict.get(result, name)) for name in PARAM_NAMES},
            # the steps between them, as the function named them (judge.steps): where it goes wrong
            "steps": {step: sanitise(local_values[step]) for step, _ in STEPS if step in local_values},
            "changed": changed,
        }
    return {**sanitise(result), "changed": changed}


def child_main(workdir: Path) -> None:
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
        records.append(
            call_answer(function, call, set_grad_mode) if callable(function) else {"status": "missing"}
        )
    with open(workdir / "results.pt", "wb") as handle:
        save({"calls": records, "cell_errors": cell_errors}, handle)
    sys.stdout.flush()
    exit_now(0)  # skip interpreter shutdown: no atexit handler or thread of the answers runs
