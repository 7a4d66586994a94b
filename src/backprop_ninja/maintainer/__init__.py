"""The maintainer's tools: the mistake catalogue, and re-running the solution notebooks.

catalogue.py  ``make diagnose``: every catalogued wrong answer through the visible tests
notebooks.py  ``make solutions`` / ``make train``: refresh the solutions' outputs, the 200k-step run
"""
