"""The student's tools: the ``backprop-ninja`` command and the student-only JupyterLab.

cli.py        ``backprop-ninja notebooks|check|lab|data``: the installed command
selfcheck.py  ``backprop-ninja check NOTEBOOK``: the notebook's own tests, headless
opening.py    the file given to ``check``: a course notebook, or one line on what it is instead
validation.py Validate's button answered by the self-check (a Jupyter server extension)
lab.py        ``backprop-ninja lab`` / ``make lab``: JupyterLab with Validate, no instructor tools
"""
