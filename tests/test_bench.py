"""The bench runs end to end on tiny settings and reports every figure (no timing thresholds)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backprop_ninja import model
from backprop_ninja.judge.exercises import ATOMIC_BY_TARGET
from backprop_ninja.reference import reference_gradients

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the bench is a top-level directory, not part of the package

from bench import figures  # noqa: E402
from bench.report import Row, Target, table  # noqa: E402
from bench.solutions import load_solution  # noqa: E402
from bench.timing import interleaved_seconds  # noqa: E402

FIGURES = ["1", "1'", "1''", "2", "1a", "1b", "1c", "3", "4", "5", "5s", "5'", "5d", "5b"]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_quick_bench_prints_and_writes_every_figure(quick_results):
    stdout, results = quick_results
    rows = {row["figure"]: row for row in results["rows"]}
    assert list(rows) == FIGURES
    for figure, row in rows.items():
        assert row["measure"] in stdout, figure
        if row["value"] is None:  # allowed only where the table says why
            assert row["detail"].startswith("not measured:"), figure
        else:
            assert math.isfinite(row["value"]), (figure, row["value"])
            assert row["value"] > 0, (figure, row["value"])
        assert row["met"] is None, figure  # --quick judges no target
    assert results["quick"] is True
    assert results["machine"]["torch"] == torch.__version__


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_quick_bench_compares_loops_that_compute_the_same_training(quick_results):
    rows = {row["figure"]: row for row in quick_results[1]["rows"]}
    # The lecture's loop, the course's loop and the autograd loop saw the same minibatches
    # and agree to float32 rounding: the ratios compare equal work.
    assert rows["1"]["data"]["max_loss_difference"] < 1e-4
    assert rows["2"]["data"]["max_loss_difference"] < 1e-4
    assert rows["3"]["data"]["max_difference"] < 1e-6
    assert rows["4"]["data"]["max_difference"] < 1e-6
    assert rows["1a"]["data"]["steps"] == rows["1b"]["data"]["steps"] > 0


def test_atomic_chains_reproduce_the_reference_gradients():
    atomic = load_solution("1_atomic_backprop")
    params = model.init_params(27, n_hidden=20, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    Xb, Yb = torch.randint(0, 27, (9, 3), generator=g), torch.randint(0, 27, (9,), generator=g)
    values = model.forward_exploded(params, Xb, Yb)
    reference = reference_gradients(params, Xb, Yb)
    dlogits = figures.cross_entropy_chain(atomic, values)()
    assert torch.allclose(dlogits, reference.grad("dlogits"))
    dhprebn = figures.batchnorm_chain(atomic, values, reference.grad("dhpreact"))()
    assert torch.allclose(dhprebn, reference.grad("dhprebn"))


def test_the_written_out_chains_call_the_exercises_functions_in_order():
    """The chains are spelled out for timing; they must be notebook 1's steps, in order."""
    called = []

    def recorder(name):
        def record(*args):
            called.append((name, len(args)))
            return torch.zeros(1)

        return record

    functions = {f"grad_{t}": recorder(t) for t in ATOMIC_BY_TARGET}
    values = {k: torch.zeros(1) for k in model.INTERMEDIATE_NAMES + model.PARAM_NAMES + ("Yb",)}
    for chain, targets in (
        (figures.cross_entropy_chain(functions, values), figures.CROSS_ENTROPY_CHAIN),
        (figures.batchnorm_chain(functions, values, torch.zeros(1)), figures.BATCHNORM_CHAIN),
    ):
        called.clear()
        chain()
        assert called == [(t, len(ATOMIC_BY_TARGET[t].args)) for t in targets]


def test_interleaved_seconds_takes_turns():
    calls = []
    seconds = interleaved_seconds(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, calls=2, warmup=1
    )
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert {k: len(v) for k, v in seconds.items()} == {"a": 3, "b": 3}


def test_targets_and_the_table_say_what_was_met_and_what_was_not_measured():
    assert Target(0.15, at_most=True).met_by(0.1)
    assert not Target(0.15, at_most=True).met_by(0.2)
    assert Target(4, at_most=False).met_by(4.0)
    assert Target(4, at_most=False).met_by(None) is None
    rows = [
        Row("3", "fused", 5.0, "×", Target(4, at_most=False)),
        Row("5", "grading", None, "s", Target(12, at_most=True), "not measured: why"),
    ]
    header = {
        "machine": {"cpu": "cpu", "cores": 2, "torch": "t", "torch_default_threads": 2},
        "load_before": 0.1,
        "load_after": 0.2,
        "quick": False,
    }
    text = table(rows, header)
    assert "5×" in text
    assert "≥ 4×" in text
    assert "yes" in text
    assert "not measured: why" in text
    assert rows[1].met is None


def test_ablation_times_every_variant():
    from bench.ablation import VARIANTS, ablation

    us = ablation(steps=5, repeats=1)
    assert list(us) == list(VARIANTS)
    assert all(math.isfinite(v) and v > 0 for v in us.values())
