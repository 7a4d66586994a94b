"""Judging one answer: a student's gradient or function in, a verdict and the reason out.

    problems.py       the one vocabulary of problems (``Problem``) every verdict uses
    messages.py       the sentences a student reads about a call, written once
    check.py          compare a gradient with the true one; a typed ``CheckResult`` with its why
    diagnosis.py      why a gradient is wrong: shape, precision, a constant factor, a reordering
    sizes.py          a case's sizes, and a number hard-coded where one belongs (read it from …)
    terms.py          diagnosis by structure: which term of the right answer is missing, scaled, wrong
    mistakes.py       the known wrong formulas of every exercise, and tensors taken from the wrong place
    exercises.py      what each graded exercise asks for; ``Trial.verdict``, the one shared check
    chain.py          notebook 4: which step of a backward pass goes wrong first, or under which key
    steps.py          notebook 4: the first wrong step among the function's own variables
    calling.py        calling a student's function in one trip: an ``Outcome`` (answer or problem)
    errors.py         a student's exception as one line that says what to do
    verdicts.py       how a verdict reaches the notebook: one line, and its JSON for the class report
    training_check.py notebook 4's training test: training with the student's backward pass

Nothing here runs a notebook or knows about grading a class: ``testing`` (the notebooks'
test cells) and ``verify`` (the grader's re-check outside the kernel) call these.
"""
