"""The sentences a student reads about a call of their function, written once: the notebooks'
tests, the training test and the verifier all say them in these words."""

from __future__ import annotations

from collections.abc import Iterable


def not_implemented(function: str) -> str:
    return f"{function} is not implemented yet"


def not_defined(function: str) -> str:
    return f"{function} is not defined — run its cell"


def ran_too_long(function: str, seconds: float) -> str:
    return f"{function} ran for more than {seconds:g} s — an endless loop?"


def called_autograd(function: str) -> str:
    return f"{function} called autograd, which is switched off while grading — compute the gradient by hand"


def returned_a_graph(function: str) -> str:
    return (
        f"{function} returned a tensor that carries an autograd graph "
        "(requires_grad or grad_fn) — compute the gradient by hand"
    )


def not_a_dict(function: str, got: str) -> str:
    return f"{function} must return a dict of gradients keyed by parameter name, got {got}"


def misnamed_key(near: str, wanted: str, keys: Iterable[str]) -> str:
    return (
        f"the dict has the key {near!r} but no {wanted!r}: key the gradients like params "
        f"({', '.join(repr(k) for k in keys)}) — misnamed key"
    )


def missing_key(wanted: str, keys: list[str]) -> str:
    return (
        f"the dict has no key {wanted!r} (it has {', '.join(map(repr, keys[:8])) or 'no keys'}): "
        "return every gradient, keyed like params — missing key"
    )


def changed_in_place(function: str, changed: Iterable[str]) -> str:
    return (
        f"⚠ {function} changes {', '.join(changed)} in place — compute new tensors "
        "(or work on a .clone()): a backward pass must not change the tensors it is given"
    )


def changed_in_place_first(function: str, changed: Iterable[str]) -> str:
    """The likely cause of a wrong answer no formula explains, when the function changed its inputs."""
    return (
        f"{function} changes {', '.join(changed)} in place, so what it computes after the change "
        "reads the changed values — compute new tensors (or work on a .clone()) and leave its "
        "inputs as they are"
    )


def on_inputs(target: str, where: str, message: str) -> str:
    """``<target> on <where>: <message>`` — which gradient, on which inputs, and why."""
    return f"{target} on {where}: {message}"


def fresh_inputs(description: str) -> str:
    return f"fresh inputs ({description})"
