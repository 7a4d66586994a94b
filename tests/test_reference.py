"""Reference gradients must agree with float64 central finite differences."""

import pytest
import torch

from backprop_ninja import model
from backprop_ninja.reference import GRADIENT_NAMES, local_gradient, reference_gradients

EPS = 1e-6


def tiny_problem():
    g = torch.Generator().manual_seed(5)
    params = model.init_params(6, n_embd=2, n_hidden=4, generator=g, dtype=torch.float64)
    Xb = torch.randint(0, 6, (5, 3), generator=g)
    Yb = torch.randint(0, 6, (5,), generator=g)
    return params, Xb, Yb


def loss_from(values: dict, name: str) -> float:
    """Re-run the exploded forward pass from just after ``name``, with ``values[name]`` as given."""
    values = dict(values)
    start = [s.name for s in model.FORWARD_STEPS].index(name) + 1 if name in model.STEPS_BY_NAME else 0
    for step in model.FORWARD_STEPS[start:]:
        values[step.name] = step.compute(*(values[i] for i in step.inputs))
    return values["loss"].item()


def finite_difference(values: dict, name: str) -> torch.Tensor:
    grad = torch.zeros_like(values[name])
    for i in range(values[name].numel()):
        bumped = []
        for sign in (1, -1):
            x = values[name].clone()
            x.view(-1)[i] += sign * EPS
            bumped.append(loss_from({**values, name: x}, name))
        grad.view(-1)[i] = (bumped[0] - bumped[1]) / (2 * EPS)
    return grad


@pytest.fixture(scope="module")
def problem():
    params, Xb, Yb = tiny_problem()
    return reference_gradients(params, Xb, Yb)


@pytest.mark.parametrize("name", GRADIENT_NAMES)
def test_reference_gradient_matches_finite_differences(problem, name):
    numeric = finite_difference(problem.values, name)
    assert torch.allclose(problem.grads[name], numeric, rtol=1e-5, atol=1e-8), name


def test_float32_reference_is_close_to_float64():
    params, Xb, Yb = tiny_problem()
    g32 = reference_gradients({k: v.float() for k, v in params.items()}, Xb, Yb, torch.float32)
    g64 = reference_gradients(params, Xb, Yb)
    assert g32.grads["W1"].dtype == torch.float32
    assert torch.allclose(g32.grads["W1"].double(), g64.grads["W1"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["counts", "bndiff", "hprebn", "logits", "probs", "C"])
def test_one_local_step_with_the_true_upstream_gives_the_true_gradient(problem, name):
    upstream = {"d" + c: problem.grads[c] for c in model.consumers(name) if c != "loss"}
    local = local_gradient(name, problem.values, upstream)
    assert torch.allclose(local.total, problem.grads[name], rtol=1e-10, atol=1e-14)
    assert len(local.branches) == len(model.consumers(name))


def test_branches_of_a_tensor_used_twice_add_up_to_its_gradient(problem):
    upstream = {"dcounts_sum": problem.grads["counts_sum"], "dprobs": problem.grads["probs"]}
    local = local_gradient("counts", problem.values, upstream)
    through_probs = problem.values["counts_sum_inv"] * problem.grads["probs"]
    assert torch.allclose(local.branches["probs"], through_probs)
    assert torch.allclose(local.branches["counts_sum"] + local.branches["probs"], local.total)


def test_local_gradient_follows_an_arbitrary_upstream(problem):
    upstream = {"dlogits": torch.randn(problem.values["logits"].shape, dtype=torch.float64)}
    local = local_gradient("h", problem.values, upstream)
    assert torch.allclose(local.total, upstream["dlogits"] @ problem.values["W2"].T)
