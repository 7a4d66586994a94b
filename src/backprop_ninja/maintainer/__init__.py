"""The maintainer's tools: the mistake catalogue, and re-running the solution notebooks.

catalogue.py  ``make diagnose``: every catalogued wrong answer through the visible tests
distribution.py  ``make release``'s first step: Colab badges, nbgitpuller links, install cell from course.py
notebooks.py  ``make solutions`` / ``make train``: refresh the solutions' outputs, the 200k-step run
"""
