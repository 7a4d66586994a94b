"""Running the course's notebooks outside JupyterLab: refreshing the solutions' outputs and
the full training run of notebook 4.

``python -m backprop_ninja.maintainer.notebooks refresh`` re-executes the solution notebooks in place, so
that their committed outputs are the ones ``pytest --nbval`` compares against (notebook 4 with
``CI_STEPS`` training steps). ``python -m backprop_ninja.maintainer.notebooks train`` (``make train``)
executes notebook 4 with the lecture's 200,000 steps into ``build/`` and checks that it
reproduces the lecture's losses.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ..course import ASSIGNMENT, NOTEBOOKS, REPO_ROOT, STEPS_VARIABLE

SOLUTIONS = REPO_ROOT / "solutions" / ASSIGNMENT
RELEASE = REPO_ROOT / "notebooks" / ASSIGNMENT
BUILD = REPO_ROOT / "build"

CI_STEPS = 2000  # notebook 4's training steps in the committed outputs and in CI
FULL_STEPS = 200_000
# What the full run must reach (the lecture's figures, rounded up).
LECTURE_BOUNDS = {"train": 2.08, "val": 2.12}
RESULT_LINE = re.compile(r"train loss (?P<train>[\d.]+) \| val loss (?P<val>[\d.]+)")


def solution_path(notebook: str) -> Path:
    return SOLUTIONS / f"{notebook}.ipynb"


def execute(path: Path, *, steps: int = CI_STEPS, timeout: int = 600):
    """Run every cell of the notebook at ``path`` in a fresh kernel; return the executed notebook.

    The kernel runs in the notebook's directory with ``BACKPROP_NINJA_STEPS=steps``. Neither
    cell timings nor widgets (tqdm's progress bar) are kept: they differ on every run.
    """
    nb = nbformat.read(str(path), as_version=4)
    metadata = copy.deepcopy(nb.metadata)
    env = {**os.environ, STEPS_VARIABLE: str(steps), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,
        record_timing=False,
        resources={"metadata": {"path": str(Path(path).parent)}},
    )
    client.execute(env=env)
    # Keep the notebook's own metadata: the kernel's (its Python patch version) is noise.
    nb.metadata = metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams([o for o in cell.outputs if not is_widget(o)])
    return nb


def is_widget(output) -> bool:
    """A widget view (tqdm's progress bar): without its state, which is not stored, it can
    only show an error, so it is not kept."""
    return "application/vnd.jupyter.widget-view+json" in output.get("data", {})


def merge_streams(outputs: list) -> list:
    """Join consecutive stream outputs of the same stream (stdout, stderr) into one.

    How printed text is split into messages depends on timing; joined, a re-executed notebook
    differs from the committed one only where its text does.
    """
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


def refresh(notebooks=NOTEBOOKS, *, steps: int = CI_STEPS) -> None:
    """Re-execute solution notebooks in place so that their outputs are up to date."""
    for notebook in notebooks:
        path = solution_path(notebook)
        nbformat.write(execute(path, steps=steps), str(path))
        print(f"refreshed {path.relative_to(REPO_ROOT)}")


def training_losses(nb) -> dict[str, float]:
    """The train and val losses printed by notebook 4's evaluation cell."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            match = RESULT_LINE.search(output.get("text", ""))
            if match:
                return {k: float(v) for k, v in match.groupdict().items()}
    raise ValueError("no 'train loss … | val loss …' line in the notebook's outputs")


def full_training(*, steps: int = FULL_STEPS, out: Path = BUILD / "4_full_training.ipynb") -> bool:
    """Execute notebook 4's solution with ``steps`` training steps into ``out``; print the
    losses and the wall time, and whether the lecture's figures are reproduced."""
    start = time.perf_counter()
    nb = execute(solution_path("4_full_training"), steps=steps, timeout=3 * 3600)
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))
    losses = training_losses(nb)
    print(f"{steps:,} steps in {seconds / 60:.1f} min (whole notebook); executed copy: {out}")
    print(
        f"train loss {losses['train']:.4f} (lecture: ≤ {LECTURE_BOUNDS['train']}) | "
        f"val loss {losses['val']:.4f} (lecture: ≤ {LECTURE_BOUNDS['val']})"
    )
    ok = all(losses[k] <= bound for k, bound in LECTURE_BOUNDS.items())
    if steps >= FULL_STEPS:
        print("reproduces the lecture" if ok else "DOES NOT reproduce the lecture")
        return ok
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_cmd = commands.add_parser("refresh", help="re-execute the solution notebooks in place")
    refresh_cmd.add_argument(
        "notebooks", nargs="*", metavar="NOTEBOOK", help=f"any of {', '.join(NOTEBOOKS)} (default: all)"
    )
    train_cmd = commands.add_parser("train", help="run notebook 4 with the full training")
    train_cmd.add_argument("--steps", type=int, default=FULL_STEPS)
    args = parser.parse_args(argv)
    if args.command == "refresh":
        unknown = set(args.notebooks) - set(NOTEBOOKS)
        if unknown:
            parser.error(f"unknown notebook(s): {', '.join(sorted(unknown))}")
        refresh(args.notebooks or NOTEBOOKS)
        return 0
    return 0 if full_training(steps=args.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
