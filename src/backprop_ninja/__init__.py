"""Backprop Ninja: the course's package. A map, by role (dependencies point down this list):

The notebooks' API (what solutions/ and notebooks/ import), torch-free facts first:
    course.py      course facts every part shares: names, paths, points, environment variables
    text.py        text that reaches a person, free of what student code could use to mislead
    cells.py       reading nbgrader notebooks as data: answer, test and read-only cells
    resources.py   the course's files wherever the package runs (a checkout or an installed wheel)
    data.py        names.txt: fetched, checked, read, turned into examples
    model.py       the makemore MLP and its forward steps
    reference.py   reference gradients by autograd: the truth every answer is checked against
    cases.py       test cases: the notebook's batch or fresh inputs (other sizes, dtypes, seeds)
    training.py    training with a manual backward pass (notebook 4)
    plots.py       the notebooks' figures
    timing.py      small timing helpers for the notebooks
    testing.py     what a notebook's test cell calls (test_on, test_training, …)

Folders, each a role (its ``__init__`` docstring lists its modules):
    judge/         one answer → a verdict and why (check, diagnosis, known mistakes, exercises)
    integrity/     the static scan of a submission: autograd, monkeypatching, dynamic tricks
    verify/        the grader's re-check of the answers outside the student's kernel
    forkserver/    stdlib-only plumbing: Python processes that start in milliseconds
    sandbox/       the sandbox student code runs in: mounts, bubblewrap, cgroups, limits
    grading/       the instructor's pipeline: collect, autograde, feedback, export, reports
    student/       the ``backprop-ninja`` command and the student-only Lab
    maintainer/    the mistake catalogue; re-running the solution notebooks
    hub/           the course on a JupyterHub: accounts, each Lab by role with its limits, the exchange
    classroom/     the old name of grading/ (``python -m backprop_ninja.classroom`` still works)

This file imports nothing: ``import backprop_ninja`` stays free of torch.
"""
