"""The bench runs end to end on tiny settings and reports every figure (no timing thresholds)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backprop_ninja import model
from backprop_ninja.data import load_splits
from backprop_ninja.judge.exercises import ATOMIC_BY_TARGET
from backprop_ninja.reference import reference_gradients

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the bench is a top-level directory, not part of the package

from bench import fused, step_breakdown, tuned  # noqa: E402
from bench.report import Row, Target, busy, merge_json, table, write_json  # noqa: E402
from bench.solutions import load_solution  # noqa: E402
from bench.timing import interleaved_seconds  # noqa: E402

FIGURES = ["1", "1'", "1''", "1t", "2", "1a", "1b", "1c", "3", "4", "5", "5s", "5'", "5d", "5b"]


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
    assert rows["1t"]["data"]["max_loss_difference"] < 1e-4
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
    dlogits = fused.cross_entropy_chain(atomic, values)()
    assert torch.allclose(dlogits, reference.grad("dlogits"))
    dhprebn = fused.batchnorm_chain(atomic, values, reference.grad("dhpreact"))()
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
        (fused.cross_entropy_chain(functions, values), fused.CROSS_ENTROPY_CHAIN),
        (fused.batchnorm_chain(functions, values, torch.zeros(1)), fused.BATCHNORM_CHAIN),
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


def test_the_tuned_backward_gives_the_model_answers_gradients():
    """Figure 1t times bench/tuned.py in place of the model answer: the same gradients."""
    model_answer = load_solution("4_full_training")["manual_backward"]
    params = model.init_params(27, n_hidden=20, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    Xb, Yb = torch.randint(0, 27, (9, 3), generator=g), torch.randint(0, 27, (9,), generator=g)
    _, cache = model.forward_fused(params, Xb, Yb)
    expected = model_answer(params, cache, Xb, Yb)
    got = tuned.manual_backward(params, cache, Xb, Yb)
    reference = reference_gradients(params, Xb, Yb)
    assert set(got) == set(model.PARAM_NAMES)
    for name in model.PARAM_NAMES:
        assert got[name].shape == params[name].shape, name
        assert torch.allclose(got[name], expected[name], rtol=1e-10, atol=1e-12), name
        assert torch.allclose(got[name], reference.grad(f"d{name}"), rtol=1e-8, atol=1e-10), name


def test_the_step_breakdown_runs_an_answer_one_statement_at_a_time():
    source = (
        "def f(a, b):\n"
        '    """Docstring: not a statement to time."""\n'
        "    c = a + b\n"
        "    if c.sum() > 0:\n"
        "        c = c * 2\n"
        "    return {'c': c}\n"
    )
    namespace: dict = {}
    exec(source, namespace)
    names, statements, texts = step_breakdown.function_statements(source)
    assert names == ["a", "b"]
    assert texts == ["c = a + b", "if c.sum() > 0: c = c * 2", "return {'c': c}"]
    assert len(statements) == 3
    rows, whole = step_breakdown.statement_breakdown(
        namespace["f"], source, (torch.ones(3), torch.ones(3)), calls=3, repeats=1
    )
    assert [text for text, _ in rows] == texts
    assert all(us >= 0 for _, us in rows)
    assert whole > 0


def test_the_step_breakdown_times_every_section_of_trains_step():
    splits = load_splits()
    sections = step_breakdown.section_breakdown(splits, {"tuned": tuned.manual_backward}, steps=3, repeats=1)[
        "tuned"
    ]
    assert list(sections.us) == list(step_breakdown.SECTIONS)
    # forward and backward are real work: they cannot be lost in the clock's own cost
    assert sections.us["forward"] > 0
    assert sections.us["manual backward"] > 0
    assert sections.instrumented_us == pytest.approx(sum(sections.us.values()))
    assert sections.train_us > 0


def test_a_partial_run_replaces_its_rows_and_keeps_the_rest(tmp_path):
    out = tmp_path / "results.json"
    header = {"generated": "full", "machine": {}}
    old = [
        Row("1", "a", 1.0, "×"),
        Row("1''", "b", 1.1, "×"),
        Row("2", "c", 2.0, "×"),
        Row("5", "d", 5.0, "s"),
    ]
    write_json(out, old, header)
    fresh = [
        Row("1", "a", 0.5, "×"),
        Row("1''", "b", 0.9, "×"),
        Row("1t", "new", 0.4, "×"),
        Row("2", "c", 2.5, "×"),
    ]
    merge_json(out, fresh, {"generated": "partial"})
    results = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["figure"], r["value"]) for r in results["rows"]] == [
        ("1", 0.5),
        ("1''", 0.9),
        ("1t", 0.4),  # a new figure goes after the one before it in the run
        ("2", 2.5),
        ("5", 5.0),
    ]
    assert results["generated"] == "full"
    assert results["partial_runs"] == [{"generated": "partial", "figures": ["1", "1''", "1t", "2"]}]


def test_a_run_on_a_busy_machine_judges_no_target():
    assert busy(0.8, 2) is False
    assert busy(2.0, 2) is False
    assert busy(19.1, 2) is True
    assert busy(None, 2) is False
    header = {
        "machine": {"cpu": "cpu", "cores": 2, "torch": "t", "torch_default_threads": 2},
        "load_before": 19.1,
        "load_after": 4.8,
        "quick": False,
        "busy": True,
    }
    assert "no time judged against its target" in table(
        [Row("1", "training", 0.03, "×", Target(0.15, at_most=True))], header
    )
